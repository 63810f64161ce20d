using System.Diagnostics;
using HostOs.Updater.Payload;
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
          hostos-updater payload inspect FILE
          hostos-updater payload verify FILE --trust DIR|PUBFILE... [--from BUILD]
          hostos-updater payload apply FILE --target IMAGE --boot-dir DIR --trust DIR|PUBFILE... [--from BUILD]
                                       [--current-version V] [--allow-downgrade]
        BUILD: a build.sh output directory (out/NAME) or its root.img
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
                    ImageBuild target = Build(a.Required("to"));
                    ImageBuild? source = a.One("from") is string from ? Build(from) : null;
                    var keys = a.All("key").Select(UpdateKeys.LoadPrivate).ToList();
                    if (keys.Count == 0) throw new UsageException("--key is required");
                    int level = a.One("level") is string l ? int.Parse(l, System.Globalization.CultureInfo.InvariantCulture) : 19;
                    var clock = Stopwatch.StartNew();
                    var r = new PayloadBuilder(level).Create(target, source, keys, a.Required("out"));
                    Console.WriteLine($"{a.Required("out")}: {(source is null ? "full" : $"delta {source.Version} ->")} {target.Version}, {r.PayloadBytes} bytes " +
                                      $"({r.Copies} copy, {r.Zeros} zero, {r.Data} data, {r.Patches} patch operations) in {clock.ElapsedMilliseconds} ms");
                    return 0;
                }
                case ["payload", "inspect", string file]:
                {
                    using FileStream f = File.OpenRead(file);
                    var (m, signatures) = PayloadFile.ReadHeadUnverified(f);
                    Console.WriteLine($"version      {m.Version}");
                    Console.WriteLine($"kind         {(m.IsDelta ? $"delta from {m.Source!.Version} ({m.Source.Size} bytes, sha256 {m.Source.Sha256})" : "full")}");
                    Console.WriteLine($"target       {m.Target.Size} bytes, sha256 {m.Target.Sha256}");
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
                        ImageBuild? source = a.One("from") is string from ? Build(from) : null;
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
                case ["payload", "apply", string file]:
                {
                    ImageBuild? source = a.One("from") is string from ? Build(from) : null;
                    using FileStream f = File.OpenRead(file);
                    int lastPercent = -1;
                    PayloadManifest m = new PayloadApplier(Trusted(a), Console.WriteLine).Apply(f,
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
                default:
                    throw new UsageException("unknown command");
            }
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"hostos-updater: {e.Message}\n{Usage}");
            return 2;
        }
        catch (Exception e) when (e is PayloadException or IOException or UnauthorizedAccessException or FormatException or System.Text.Json.JsonException)
        {
            Console.Error.WriteLine($"hostos-updater: {e.Message}");
            return 1;
        }
    }

    private static ImageBuild Build(string path) =>
        File.Exists(path)
            ? ImageBuild.FromDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!) with { RootImage = path }
            : ImageBuild.FromDirectory(path);

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
