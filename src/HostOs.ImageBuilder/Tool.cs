using System.Diagnostics;

namespace HostOs.ImageBuilder;

/// <summary>Runs a host tool; a non-zero exit is an error that names the command and shows its stderr.</summary>
internal static class Tool
{
    public static string Run(string file, IEnumerable<string> args, string? workingDirectory = null, IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (string a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using Process p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{file} {string.Join(' ', psi.ArgumentList)} exited {p.ExitCode}: {stderr.Result.Trim()}");
        }
        return stdout;
    }
}
