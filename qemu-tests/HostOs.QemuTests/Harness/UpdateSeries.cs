using System.Diagnostics;

namespace HostOs.QemuTests.Harness;

/// <summary>
/// Consecutive versions of the test image for the update tests, built once per test class
/// with the build's image builder: 0.1.0 is the test image itself (what the VM boots),
/// 0.2.0 and 0.3.0 differ by a file, 0.4.0 carries a health check that always fails. Each
/// version's payloads (full, and delta from the one before) are signed with the build's
/// update key, whose public half every image trusts. The update repository is served by
/// a plain HTTP server on the build host (python's http.server), reached from the guest at
/// 10.0.2.2; releases are published into it step by step as a test goes.
/// </summary>
public sealed class UpdateSeries : IDisposable
{
    public static string HostUpdater => Path.Combine(Repo.Root, "out", "publish", "hostos-updater", "hostos-updater");
    public static string Key => Path.Combine(Repo.Root, "out", "keys", "hostos-update.key");

    public string Work { get; } = Directory.CreateTempSubdirectory("update-series-").FullName;
    public string RepoDir => Path.Combine(Work, "repo");
    public int Port { get; } = QemuMachine.HostPort();
    public string Url => $"http://10.0.2.2:{Port}/";
    private readonly Process _server;
    private readonly Dictionary<string, string> _builds = new(StringComparer.Ordinal);

    public UpdateSeries()
    {
        _builds["0.1.0"] = Path.Combine(Repo.Root, "out", "hostos-test");
        Build("0.2.0", """ "files": [ { "target": "/etc/hostos-series", "content": "series 2\n" } ] """);
        Build("0.3.0", """ "files": [ { "target": "/etc/hostos-series", "content": "series 3\n" } ] """);
        Build("0.4.0", """
            "files": [ { "target": "/etc/hostos-series", "content": "series 4, broken\n" } ],
            "health": { "deadlineSeconds": 8, "checks": [ { "name": "broken-on-purpose", "exec": ["/usr/bin/false"] } ] }
            """);
        // Hangs before its services start, as a boot waiting on a driver that never answers:
        // only the watchdog (10 s here) ends each try.
        Build("0.5.0", """
            "files": [ { "target": "/etc/hostos-series", "content": "series 5, hangs\n" } ],
            "kernel": { "cmdline": "console=ttyS0,115200 quiet panic=10 hostos.fault=hang" },
            "health": { "deadlineSeconds": 8, "watchdogSeconds": 10 }
            """);
        Directory.CreateDirectory(Path.Combine(RepoDir, "payloads"));
        _server = Process.Start(new ProcessStartInfo("python3", ["-m", "http.server", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "-d", RepoDir])
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        })!;
        _server.OutputDataReceived += (_, _) => { };
        _server.ErrorDataReceived += (_, _) => { };
        _server.BeginOutputReadLine();
        _server.BeginErrorReadLine();
    }

    private void Build(string version, string extra)
    {
        string name = "hostos-test-" + version.Replace('.', '-');
        string def = Path.Combine(Work, name + ".json");
        File.WriteAllText(def, $$"""
            { "extends": "{{Path.Combine(Repo.Root, "qemu-tests", "image", "hostos-test.json")}}", "name": "{{name}}", "version": "{{version}}",
              {{extra}} }
            """);
        Run("dotnet", Path.Combine(Repo.Root, "out", "imagebuilder", "hostos-imagebuilder.dll"), "build", def);
        _builds[version] = Path.Combine(Repo.Root, "out", name);
    }

    public string BuildOf(string version) => _builds[version];

    /// <summary>A payload of <paramref name="version"/> (a delta from <paramref name="from"/> when given) at <paramref name="file"/> under the repository.</summary>
    public string Payload(string version, string? from = null, string? file = null, string? key = null)
    {
        file ??= $"payloads/{(from is null ? $"{version}-full" : $"{from}-{version}")}.hup";
        string path = Path.Combine(RepoDir, file);
        var args = new List<string> { "payload", "create", "--to", _builds[version], "--key", key ?? Key, "--level", "3", "--out", path };
        if (from is not null) args.AddRange(["--from", _builds[from]]);
        Run(HostUpdater, [.. args]);
        return path;
    }

    /// <summary>Signs the channel's index over every payload now in the repository (or a second repository in a subdirectory, <c>{Url}sub/</c>).</summary>
    public void Publish(string channel = "stable", int validDays = 30, string? subdirectory = null) =>
        Run(HostUpdater, "repo", "publish", "--dir", subdirectory is null ? RepoDir : Path.Combine(RepoDir, subdirectory), "--channel", channel, "--key", Key,
            "--valid-days", validDays.ToString(System.Globalization.CultureInfo.InvariantCulture));

    public static string Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Repo.Root };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using Process p = Process.Start(psi)!;
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {p.ExitCode}: {stderr.Result}{stdout}");
        return stdout;
    }

    public void Dispose()
    {
        if (!_server.HasExited) _server.Kill();
        _server.Dispose();
        Directory.Delete(Work, recursive: true);
        foreach (var (version, dir) in _builds)
        {
            if (version != "0.1.0") Directory.Delete(dir, recursive: true);
        }
    }
}
