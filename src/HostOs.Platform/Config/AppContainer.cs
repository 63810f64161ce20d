using System.Text.Json;
using System.Text.Json.Serialization;

namespace HostOs.Platform.Config;

/// <summary>
/// An app container: the machine's real workload, declared by the operator on state
/// (<c>/var/lib/hostos/apps/NAME/app.json</c>, written through the API or by the
/// first-boot configuration), its image pulled from a registry or imported into the image
/// store on state. Everything a service container has, plus volumes on state. Docker's
/// defaults: the root is writable (the writes are lost when the container stops; what
/// must last goes in a volume) and the network is the bridge, with outbound access.
/// </summary>
public sealed class AppContainer : ServiceContainer
{
    public AppContainer()
    {
        ReadonlyRootfs = false;
        Network = ContainerNetwork.Bridge;
    }

    public override string Kind => "app";

    /// <summary>Named directories on state mounted into the container; they outlive its runs, reboots and updates, and go with the app.</summary>
    public List<VolumeMount> Volumes { get; set; } = [];

    public static AppContainer Parse(string json, string source)
    {
        AppContainer app = StrictJson.Parse(json, ConfigJson.Default.AppContainer, source);
        var errors = new List<string>();
        app.Validate(source, errors);
        if (errors.Count > 0) throw new InvalidDataException(string.Join("; ", errors));
        return app;
    }

    public string ToJson() => JsonSerializer.Serialize(this, ConfigJson.Default.AppContainer);

    /// <summary>Every problem of the definition on its own (names of other services are checked where they are known).</summary>
    public void Validate(string source, List<string> errors)
    {
        Validate(source, new HashSet<string>(), errors);
        string at = $"{source}: app '{Name}'";
        var names = new HashSet<string>(StringComparer.Ordinal);
        var targets = new HashSet<string>(Binds.Select(b => b.Target), StringComparer.Ordinal);
        foreach (VolumeMount v in Volumes)
        {
            if (!IsName(v.Name)) errors.Add($"{at}: volume name '{v.Name}' must be lower-case letters, digits, '_', '.' or '-'");
            if (!names.Add(v.Name)) errors.Add($"{at}: volume '{v.Name}' is mounted twice");
            if (!v.Target.StartsWith('/') || HasDotDot(v.Target) || v.Target == "/") errors.Add($"{at}: volume '{v.Name}': target '{v.Target}' must be an absolute path below / without '..'");
            if (!targets.Add(v.Target)) errors.Add($"{at}: '{v.Target}' is the target of two mounts");
        }
        if (After.Contains(Name)) errors.Add($"{at}: it cannot start after itself");
    }

    /// <summary>
    /// An image reference ([REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST]); checked for its
    /// shape here, parsed fully by the image tool that pulls it.
    /// </summary>
    private protected override void ValidateImage(string at, ISet<string> images, List<string> errors)
    {
        if (Image.Length is 0 or > 512 || Image.Any(c => c <= ' ' || c > '~') || Image.StartsWith('/') || Image.EndsWith('/'))
        {
            errors.Add($"{at}: image '{Image}' is not an image reference such as registry.example:5000/team/app:1.2");
        }
    }
}

public sealed class VolumeMount
{
    public required string Name { get; init; }
    public required string Target { get; init; }
    public bool Readonly { get; init; }
}

/// <summary>Where an app's files live on state; removing the app removes its directory.</summary>
public static class AppPaths
{
    public const string Root = "/var/lib/hostos/apps";
    /// <summary>The image tool's program, which pulls and imports (it needs OpenSSL; PID 1 does not load it).</summary>
    public const string ImageTool = "/usr/bin/hostos-images";
    /// <summary>Registry credentials and insecure (plain HTTP) registries.</summary>
    public const string Registries = "/etc/hostos/registries.json";

    public static string Directory(string app) => System.IO.Path.Combine(Root, app);

    /// <summary>Writes the app's definition (directories root-only: env may hold secrets), atomically and durably.</summary>
    public static void Save(AppContainer app)
    {
        const UnixFileMode RootOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
        System.IO.Directory.CreateDirectory(Root, RootOnly);
        System.IO.Directory.CreateDirectory(Directory(app.Name), RootOnly);
        AtomicFile.Write(Definition(app.Name), System.Text.Encoding.UTF8.GetBytes(app.ToJson() + "\n"), durable: true);
    }
    /// <summary>The operator's definition.</summary>
    public static string Definition(string app) => System.IO.Path.Combine(Root, app, "app.json");
    /// <summary>The image the definition's reference resolved to: a <see cref="BakedImage"/> whose layers are in the image store.</summary>
    public static string Image(string app) => System.IO.Path.Combine(Root, app, "image.json");
    public static string Volume(string app, string volume) => System.IO.Path.Combine(Root, app, "volumes", volume);
    /// <summary>The writable layer of the current run (emptied at every start), on state rather than in memory.</summary>
    public static string RunLayer(string app) => System.IO.Path.Combine(Root, app, "run");
    /// <summary>Where the image store keeps an unpacked layer (an overlayfs lower directory).</summary>
    public static string StoreLayer(string diffIdHex) => System.IO.Path.Combine("/var/lib/hostos/images/layers", diffIdHex);
}
