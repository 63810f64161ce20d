using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace HostOs.UnitTests.Init;

/// <summary>
/// PID 1 hazards as contracts on the init's code (docs/pid1.md): it must never touch
/// System.Diagnostics.Process or System.Console (either installs the runtime's SIGCHLD
/// handler, which reaps every child when getpid() == 1, behind our reaper's back) nor
/// System.Security.Cryptography (which loads OpenSSL, absent from the image).
/// </summary>
public class ReaperPolicyTests
{
    [Theory]
    [InlineData("hostos-init.dll")]
    [InlineData("HostOs.Platform.dll")]
    [InlineData("HostOs.Containers.dll")] // to be linked into hostos-init
    public void InitDoesNotReferenceProcessOrCrypto(string assembly)
    {
        using var pe = new PEReader(File.OpenRead(Path.Combine(AppContext.BaseDirectory, assembly)));
        MetadataReader md = pe.GetMetadataReader();
        var referenced = md.TypeReferences
            .Select(h => md.GetTypeReference(h))
            .Select(t => $"{md.GetString(t.Namespace)}.{md.GetString(t.Name)}")
            .ToList();
        Assert.NotEmpty(referenced);
        Assert.DoesNotContain(referenced, t => t.StartsWith("System.Diagnostics.Process", StringComparison.Ordinal));
        Assert.DoesNotContain(referenced, t => t.StartsWith("System.Security.Cryptography.", StringComparison.Ordinal));
        Assert.DoesNotContain("System.Console", referenced);
    }

    [Theory]
    [InlineData("Name:\tx\nSigCgt:\t0000000328034486\n", true)]   // PID 1 with Console on a tty
    [InlineData("Name:\tx\nSigCgt:\t0000000328004406\n", false)]  // after the fix
    [InlineData("Name:\tx\n", false)]
    public void SigChldCatchIsDetected(string status, bool caught) =>
        Assert.Equal(caught, HostOs.Init.Processes.ProcessTable.RuntimeCatchesSigChld(status));
}
