using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace HostOs.UnitTests.Images;

/// <summary>
/// Debian's docker-registry (the reference distribution implementation), started on
/// 127.0.0.1 with a configuration of the test's choosing: plain, TLS, htpasswd (basic) or
/// token auth. Installed by build.sh --deps-only, which test.sh runs first.
/// </summary>
internal sealed class Registry : IDisposable
{
    public const string Binary = "/usr/bin/docker-registry";
    private readonly Process _process;
    public string Dir { get; }
    public int Port { get; }
    public string Host => $"127.0.0.1:{Port}";
    public string Storage => Path.Combine(Dir, "storage");

    public static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    /// <param name="auth">YAML of the auth section's body, or null.</param>
    /// <param name="tls">(certificate, key) files, or null.</param>
    public Registry(string? auth = null, (string Cert, string Key)? tls = null)
    {
        if (!File.Exists(Binary)) throw new InvalidOperationException($"{Binary} is missing: run ./build.sh --deps-only (test.sh does)");
        Dir = Directory.CreateTempSubdirectory("registry-").FullName;
        Port = FreePort();
        var yaml = new StringBuilder();
        yaml.Append($"""
            version: 0.1
            log:
              level: warn
            storage:
              filesystem:
                rootdirectory: {Storage}
              delete:
                enabled: true
            http:
              addr: 127.0.0.1:{Port}

            """);
        if (tls is var (cert, key)) yaml.Append($"  tls:\n    certificate: {cert}\n    key: {key}\n");
        if (auth is not null) yaml.Append("auth:\n" + auth);
        File.WriteAllText(Path.Combine(Dir, "config.yml"), yaml.ToString());
        _process = Process.Start(new ProcessStartInfo(Binary, ["serve", Path.Combine(Dir, "config.yml")])
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        })!;
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var c = new TcpClient();
                c.Connect(IPAddress.Loopback, Port);
                return;
            }
            catch (SocketException) when (clock.Elapsed < TimeSpan.FromSeconds(20) && !_process.HasExited)
            {
                Thread.Sleep(50);
            }
        }
    }

    /// <summary>The registry's stored data file of a blob (to tamper with it).</summary>
    public string BlobData(string digest) => Path.Combine(Storage, "docker/registry/v2/blobs/sha256", digest[7..9], digest[7..], "data");

    public void Dispose()
    {
        try { _process.Kill(); _process.WaitForExit(5000); } catch (InvalidOperationException) { }
        Directory.Delete(Dir, recursive: true);
    }

    /// <summary>openssl: a self-signed certificate (and key) for 127.0.0.1 / CN.</summary>
    public static (string Cert, string Key) SelfSigned(string dir, string cn)
    {
        string cert = Path.Combine(dir, cn + ".pem"), key = Path.Combine(dir, cn + ".key");
        Run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=" + cn,
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert);
        return (cert, key);
    }

    public static string Run(string program, params string[] args)
    {
        var p = Process.Start(new ProcessStartInfo(program, args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        string output = p.StandardOutput.ReadToEnd();
        string error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{program} {string.Join(' ', args)}: {error}");
        return output;
    }
}
