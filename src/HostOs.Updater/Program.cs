using System.Diagnostics;
using HostOs.Platform.Boot;
using HostOs.Platform.Config;
using HostOs.Updater.Machine;
using HostOs.Updater.Payload;
using HostOs.Updater.Repository;
using NSec.Cryptography;

namespace HostOs.Updater;

/// <summary>
/// hostos-updater's payload tools (docs/updates.md); the update daemon comes with the rest
/// of issue 5. Exit code 0, 1 with one line naming the problem, 2 on bad usage.
/// </summary>
internal static class Program
{
    private const string Usage = """
        usage:
          hostos-updater keygen --out DIR [--name NAME]
          hostos-updater payload create --to BUILD [--from BUILD] --key KEY [--key KEY...] --out FILE [--level N]
                                        [--format 3]   (for machines whose updater reads format 3 at most)
          hostos-updater payload inspect FILE
          hostos-updater payload verify FILE --trust DIR|PUBFILE... [--from BUILD]
          hostos-updater payload apply FILE --target IMAGE --boot-dir DIR --trust DIR|PUBFILE... [--from BUILD]
                                       [--current-version V] [--allow-downgrade]
          hostos-updater image verify IMAGE|BUILD [--verity BLOCKS:ROOTHASH:SALT] [--file PATH=SHA256...]
                                       (IMAGE: a root image or a slot; BUILD's own hostos.verity= unless --verity)
          hostos-updater repo publish --dir REPO --channel NAME --key KEY [--key KEY...] [--valid-days N]
          hostos-updater install --server URL --channel NAME --trust DIR|PUBFILE... --current-version V
                                 --target IMAGE --boot-dir DIR [--from BUILD] [--allow-downgrade]
        on a HostOS machine (root; docs/updates.md "On a machine"):
          hostos-updater status
          hostos-updater update [--server URL] [--channel NAME] [--payload FILE|URL] [--allow-downgrade]
          hostos-updater rollback
          hostos-updater daemon      (the service: org.hostos.Updater1, the policy of /etc/hostos/update.json)
        BUILD: a build.sh output directory (out/NAME) or its root.img
        REPO: a directory served by any HTTP server; payloads in REPO/payloads/*.hup
        """;

    private static int Main(string[] args)
    {
        try
        {
            var a = new Args(args);
            switch (a.Positional)
            {
                case ["keygen"]:
                {
                    var (priv, pub) = UpdateKeys.Generate(a.Required("out"), a.One("name") ?? "hostos-update");
                    Console.WriteLine($"private key {priv} (keep it secret), public key {pub}: id {UpdateKeys.KeyId(UpdateKeys.ParsePublic(File.ReadAllText(pub), pub))}");
                    return 0;
                }
                case ["payload", "create"]:
                {
                    ImageBuild target = ImageBuild.Of(a.Required("to"));
                    ImageBuild? source = a.One("from") is string from ? ImageBuild.Of(from) : null;
                    var keys = a.All("key").Select(UpdateKeys.LoadPrivate).ToList();
                    if (keys.Count == 0) throw new UsageException("--key is required");
                    int level = a.One("level") is string l ? int.Parse(l, System.Globalization.CultureInfo.InvariantCulture) : 19;
                    var clock = Stopwatch.StartNew();
                    int format = a.One("format") switch
                    {
                        null => PayloadManifest.CurrentFormat,
                        "3" => 3,
                        "4" => 4,
                        string other => throw new UsageException($"--format {other}: payloads are made in format 3 or 4"),
                    };
                    var r = new PayloadBuilder(level, format).Create(target, source, keys, a.Required("out"));
                    Console.WriteLine($"{a.Required("out")}: {(source is null ? "full" : $"delta {source.Version} ->")} {target.Version}, {r.PayloadBytes} bytes " +
                                      $"({r.Count(OperationType.Copy)} copy, {r.Count(OperationType.Zero)} zero, {r.Count(OperationType.Data)} data, {r.Count(OperationType.Patch)} patch, {r.Count(OperationType.Diff)} diff operations) in {clock.ElapsedMilliseconds} ms");
                    return 0;
                }
                case ["payload", "inspect", string file]:
                {
                    using FileStream f = File.OpenRead(file);
                    var (m, signatures) = PayloadFile.ReadHeadUnverified(f);
                    Console.WriteLine($"version      {m.Version}");
                    Console.WriteLine($"kind         {(m.IsDelta ? $"delta from {m.Source!.Version} ({m.Source.Size} bytes, sha256 {m.Source.Sha256})" : "full")}");
                    Console.WriteLine($"target       {m.Target.Size} bytes, sha256 {m.Target.Sha256}");
                    if (m.Target.VerityRootHash is string roothash) Console.WriteLine($"dm-verity    root hash {roothash}");
                    Console.WriteLine($"created      {m.Created}");
                    Console.WriteLine($"cmdline      {m.Cmdline}");
                    Console.WriteLine($"operations   {m.Operations.Count}: {string.Join(", ", m.Operations.GroupBy(o => o.Type).Select(g => $"{g.Count()} {g.Key.ToString().ToLowerInvariant()}"))}");
                    Console.WriteLine($"data         {m.DataLength} bytes");
                    foreach (BootFile b in m.BootFiles) Console.WriteLine($"boot file    {b.Name}: {b.Size} bytes, sha256 {b.Sha256}");
                    foreach (Signature s in signatures.Signatures) Console.WriteLine($"signed by    key {s.KeyId} (not verified by inspect)");
                    return 0;
                }
                case ["payload", "verify", string file]:
                {
                    // Everything checked, by applying into a scratch file that is then thrown away.
                    string scratch = Directory.CreateTempSubdirectory("hostos-verify-").FullName;
                    try
                    {
                        ImageBuild? source = a.One("from") is string from ? ImageBuild.Of(from) : null;
                        using FileStream f = File.OpenRead(file);
                        PayloadManifest m = new PayloadApplier(Trusted(a), Console.WriteLine)
                            .Apply(f, new ApplyTarget(Path.Combine(scratch, "root.img"), source?.RootImage, Path.Combine(scratch, "boot"), SourceBoot(source)), null, allowDowngrade: true);
                        Console.WriteLine($"{file}: valid, version {m.Version}");
                        return 0;
                    }
                    finally
                    {
                        Directory.Delete(scratch, recursive: true);
                    }
                }
                case ["image", "verify", string image]:
                {
                    // A root image, a slot or a build by its dm-verity root (the build's command
                    // line's unless --verity names one), and files beside it by their SHA-256.
                    if (HostOs.Platform.StepTrace.Enabled) HostOs.Platform.StepTrace.Step("check", $"main, {HostOs.Platform.StepTrace.SinceProcessStart()} ms after the process started");
                    var clock = Stopwatch.StartNew();
                    var (root, verity) = ImageCheck.Locate(image, a.One("verity"));
                    var files = a.All("file").Select(ImageCheck.ExpectedFile.Parse).ToList();
                    ImageCheck.Verify(root, verity, files);
                    Console.WriteLine($"{root}: {verity.DataBlocks} blocks and their hash tree match dm-verity root hash {verity.RootHash}" +
                                      (files.Count == 0 ? "" : $"; {files.Count} file(s) match their sha256") + $" ({clock.ElapsedMilliseconds} ms)");
                    return 0;
                }
                case ["payload", "apply", string file]:
                {
                    if (HostOs.Platform.StepTrace.Enabled) HostOs.Platform.StepTrace.Step("apply", $"main, {HostOs.Platform.StepTrace.SinceProcessStart()} ms after the process started");
                    ImageBuild? source = a.One("from") is string from ? ImageBuild.Of(from) : null;
                    HostOs.Platform.StepTrace.Step("apply", "source build read");
                    var trusted = Trusted(a);
                    HostOs.Platform.StepTrace.Step("apply", "trusted keys read");
                    using FileStream f = File.OpenRead(file);
                    int lastPercent = -1;
                    PayloadManifest m = new PayloadApplier(trusted, Console.WriteLine).Apply(f,
                        new ApplyTarget(a.Required("target"), source?.RootImage, a.Required("boot-dir"), SourceBoot(source)),
                        a.One("current-version"), a.Has("allow-downgrade"),
                        p =>
                        {
                            int percent = (int)(p.Done * 100 / p.Total);
                            if (percent / 10 != lastPercent / 10) Console.WriteLine($"{percent}%");
                            lastPercent = percent;
                        });
                    Console.WriteLine($"applied {m.Version}");
                    return 0;
                }
                case ["repo", "publish"]:
                {
                    var keys = a.All("key").Select(UpdateKeys.LoadPrivate).ToList();
                    if (keys.Count == 0) throw new UsageException("--key is required");
                    int days = a.One("valid-days") is string d ? int.Parse(d, System.Globalization.CultureInfo.InvariantCulture) : 30;
                    UpdateIndex index = UpdateIndex.Publish(a.Required("dir"), a.Required("channel"), keys, TimeSpan.FromDays(days), DateTimeOffset.UtcNow);
                    foreach (UpdateIndex.Release r in index.Releases)
                    {
                        Console.WriteLine($"{r.Version}: {(r.Full is null ? "no full payload" : r.Full.Path)}{string.Concat(r.Deltas.Select(x => $", delta from {x.From}: {x.Path}"))}");
                    }
                    Console.WriteLine($"{a.Required("channel")}/index.json signed, expires {index.Expires:u}");
                    return 0;
                }
                case ["install"]:
                {
                    // The whole path a machine takes, against image files: index, choice, streamed apply.
                    string server = a.Required("server");
                    using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(2) };
                    var client = new UpdateClient(http, new Uri(server.EndsWith('/') ? server : server + "/"), Trusted(a), Console.WriteLine);
                    string current = a.Required("current-version");
                    UpdateIndex index = client.FetchIndex(a.Required("channel"), DateTimeOffset.UtcNow);
                    if (index.Choose(current) is not var (release, payload))
                    {
                        Console.WriteLine($"{current} is the newest on channel {index.Channel}");
                        return 0;
                    }
                    Console.WriteLine($"installing {release.Version} from {payload.Path} ({payload.Size} bytes{(payload.From is null ? "" : $", delta from {payload.From}")})");
                    ImageBuild? source = a.One("from") is string from ? ImageBuild.Of(from) : null;
                    using Stream download = client.Open(payload);
                    new PayloadApplier(Trusted(a), Console.WriteLine).Apply(download,
                        new ApplyTarget(a.Required("target"), source?.RootImage, a.Required("boot-dir"), SourceBoot(source)), current, a.Has("allow-downgrade"));
                    Console.WriteLine($"installed {release.Version}{(download is ResumingDownload { Resumptions: > 0 } d ? $" (download resumed {d.Resumptions} times)" : "")}");
                    return 0;
                }
                case ["status"]:
                    return OnMachine(u =>
                    {
                        SlotStatus st = u.Status();
                        Console.WriteLine($"running      {st.RunningVersion} (slot {st.RunningSlot})");
                        if (st.RolledBackFrom is not null) Console.WriteLine($"rolled back  from {st.RolledBackFrom}: {st.RollbackReason}");
                        Console.WriteLine($"next boot    {st.NextBoot ?? st.RunningVersion}{(st.NextBoot is null ? "" : " (reboot to start it)")}");
                        foreach (InstalledEntry e in st.Entries) Console.WriteLine($"entry        {e.Name.FileName}: {e.Version}, slot {e.Slot ?? "?"}, {e.State}");
                    });
                case ["update"]:
                    return OnMachine(u => Update(u, a));
                case ["rollback"]:
                    return OnMachine(u => Console.WriteLine(u.Rollback()));
                case ["daemon"]:
                    return Daemon.DaemonHost.Run();
                default:
                    throw new UsageException("unknown command");
            }
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"hostos-updater: {e.Message}\n{Usage}");
            return 2;
        }
        catch (Exception e) when (e is PayloadException or IOException or InvalidDataException or UnauthorizedAccessException or FormatException or System.Text.Json.JsonException
                                      or HttpRequestException or TaskCanceledException)
        {
            Console.Error.WriteLine($"hostos-updater: {e.Message}");
            return 1;
        }
    }

    private static int OnMachine(Action<SlotUpdater> action) => MachineSession.Run(u =>
    {
        action(u);
        return 0;
    }, Console.WriteLine);

    /// <summary>
    /// The newest release on the channel (or one payload named by hand), streamed into the
    /// inactive slot; the new entry boots at the next reboot.
    /// </summary>
    private static void Update(SlotUpdater updater, Args a)
    {
        int lastTenth = -1;
        Action<PayloadApplier.Progress> progress = p =>
        {
            int tenth = (int)(p.Done * 10 / Math.Max(1, p.Total));
            if (tenth != lastTenth) Console.WriteLine($"progress {tenth * 10}%");
            lastTenth = tenth;
        };
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(2) };
        if (a.One("payload") is string given)
        {
            // Over HTTP: resumed after a cut connection, and an interrupted apply's retry asks
            // only for the data it still needs (no index: the size is the server's).
            using Stream s = Uri.TryCreate(given, UriKind.Absolute, out Uri? url) && url.Scheme is "http" or "https"
                ? new ResumingDownload(http, url, null, say: Console.WriteLine)
                : File.OpenRead(given);
            PayloadManifest m = updater.Install(s, a.Has("allow-downgrade"), progress);
            Console.WriteLine($"installed {m.Version}: reboot to start it");
            return;
        }
        var source = ReleaseSource.FromSettings(http, MachineSession.Settings(), a.One("server"), a.One("channel"), Console.WriteLine);
        if (source.Check(updater.Layout.RunningVersion) is not var (release, payload))
        {
            Console.WriteLine($"{updater.Layout.RunningVersion} is the newest on channel {source.Channel}");
            return;
        }
        Console.WriteLine($"installing {ReleaseSource.Describe(release, payload)}");
        source.Install(updater, release, payload, progress);
        Console.WriteLine($"installed {release.Version}: reboot to start it");
    }

    private static string? SourceBoot(ImageBuild? source) => source is null ? null : Path.GetDirectoryName(Path.GetFullPath(source.Kernel));

    private static List<PublicKey> Trusted(Args a)
    {
        var keys = new List<PublicKey>();
        foreach (string t in a.All("trust"))
        {
            if (Directory.Exists(t)) keys.AddRange(UpdateKeys.LoadTrusted(t));
            else keys.Add(UpdateKeys.ParsePublic(File.ReadAllText(t), t));
        }
        if (keys.Count == 0) throw new UsageException("--trust (a directory of *.pub files, or a .pub file) is required");
        return keys;
    }
}

internal sealed class UsageException(string message) : Exception(message);

/// <summary>--name value options (repeatable), --flag switches, and positional words.</summary>
internal sealed class Args
{
    private static readonly HashSet<string> Switches = ["allow-downgrade"];
    private readonly Dictionary<string, List<string>> _options = new(StringComparer.Ordinal);
    public List<string> Positional { get; } = [];

    public Args(string[] args)
    {
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal)) { Positional.Add(args[i]); continue; }
            string name = args[i][2..];
            if (Switches.Contains(name)) { Add(name, ""); continue; }
            if (i + 1 >= args.Length) throw new UsageException($"--{name} needs a value");
            Add(name, args[++i]);
        }
    }

    private void Add(string name, string value)
    {
        if (!_options.TryGetValue(name, out var list)) _options[name] = list = [];
        list.Add(value);
    }

    public bool Has(string name) => _options.ContainsKey(name);
    public IReadOnlyList<string> All(string name) => _options.GetValueOrDefault(name) ?? [];
    public string? One(string name) => All(name) switch
    {
        [] => null,
        [string v] => v,
        _ => throw new UsageException($"--{name} is given twice"),
    };
    public string Required(string name) => One(name) ?? throw new UsageException($"--{name} is required");
}
