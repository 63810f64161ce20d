using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>PID 1 reaps every orphan, at once, under a storm.</summary>
public sealed class OrphanTests
{
    [Fact]
    public async Task ThousandOrphansExitingAtOnce_LeaveNoZombieWithinOneSecond()
    {
        await using var vm = QemuMachine.Create("orphans");
        vm.Start();
        await vm.WaitForReadyAsync();
        SerialShell sh = await vm.ShellAsync();

        // hostos-guestcheck orphans 1000 (tests/HostOs.GuestCheck): 1000 processes
        // re-parented to PID 1 and blocked on one FIFO are released at the same instant;
        // it prints PASS only if none is left, zombie or not, within one second of the last
        // one's exit (docs/pid1.md: the exits themselves take longer than that under TCG).
        var (code, output) = await sh.RunAsync("hostos-guestcheck orphans 1000", TimeSpan.FromMinutes(5));
        vm.Console.Note(output);
        Assert.True(code == 0, output);
        Assert.Contains("PASS orphans", output);

        // Negative control: the same storm, orphaned to a subreaper that does not reap,
        // must be seen as 1000 zombies, or the measurement above proves nothing.
        (code, output) = await sh.RunAsync("hostos-guestcheck orphans 1000 --control", TimeSpan.FromMinutes(5));
        vm.Console.Note(output);
        Assert.True(code == 0, output);
        Assert.Contains("CONTROL orphans: without a reaper, 1000 of 1000 are zombies", output);

        string zombies = await sh.CheckAsync("cat /proc/[0-9]*/stat 2>/dev/null | awk '$3 == \"Z\"' | wc -l");
        Assert.Equal("0", zombies.Trim());
    }
}
