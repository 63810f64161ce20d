using HostOs.Init.Processes;
using HostOs.Init.Services;
using HostOs.Platform.Config;
using HostOs.Platform.Interop;

namespace HostOs.Init.Containers;

/// <summary>
/// Where a container's root comes from and where its writes go. System containers (this
/// base): an image baked into the read-only root, writes in the bundle's tmpfs, cgroup
/// under hostos-system. App containers: <see cref="AppStorage"/>.
/// </summary>
internal class ContainerStorage
{
    public static readonly ContainerStorage Baked = new();

    public virtual string CgroupParent => "hostos-system";

    public virtual BakedImage LoadImage(ContainerDefinition definition)
    {
        string path = BakedImage.PathOf(definition.Image);
        if (!File.Exists(path)) throw new InvalidDataException($"image '{definition.Image}' is not baked into this root ({path} is missing)");
        return InitConfig.ParseBakedImage(File.ReadAllText(path), path);
    }

    public virtual string LayerPath(string diffIdHex) => BakedImage.LayerPath(diffIdHex);

    /// <summary>Where the upper and work directories go (emptied at each start and after each run); null: in the bundle, on tmpfs.</summary>
    public virtual string? WritableLayer => null;

    /// <summary>Extra bind mounts for this run, given the mounted root (not yet entered by anything).</summary>
    public virtual IReadOnlyList<BindMount> Volumes(string rootfs) => [];

    /// <summary>Before the first run: nothing for a baked image.</summary>
    public virtual Task PrepareAsync(CancellationToken stop) => Task.CompletedTask;
}

/// <summary>
/// An app container's storage, all under /var/lib/hostos/apps/NAME on state: the image
/// the image tool resolved (image.json, layers in the image store), the writable layer of
/// the current run, and the volumes. cgroup under hostos-apps.
/// </summary>
internal sealed class AppStorage(AppContainer app, ProcessTable processes) : ContainerStorage
{
    private static readonly TimeSpan FirstRetry = TimeSpan.FromSeconds(2), LastRetry = TimeSpan.FromSeconds(60);

    public override string CgroupParent => "hostos-apps";

    public override BakedImage LoadImage(ContainerDefinition definition)
    {
        string path = AppPaths.Image(app.Name);
        if (!File.Exists(path)) throw new InvalidDataException($"app '{app.Name}': its image {app.Image} is not prepared ({path} is missing)");
        BakedImage image = InitConfig.ParseBakedImage(File.ReadAllText(path), path);
        if (image.Name != app.Image) throw new InvalidDataException($"app '{app.Name}': {path} is for image {image.Name}, not {app.Image}");
        return image;
    }

    /// <summary>
    /// Makes sure the app's image is in the store and recorded (image.json): at once when it
    /// already is (a boot needs no network for an app it ran before), otherwise through the
    /// image tool, which pulls it. A failed pull is logged and retried, 2 s doubling to a
    /// minute, until it works or the app is stopped: whatever the restart policy, since no
    /// run has happened yet.
    /// </summary>
    public override async Task PrepareAsync(CancellationToken stop)
    {
        TimeSpan wait = FirstRetry;
        while (!IsPrepared())
        {
            var (code, lines) = await ImageToolProcess.RunAsync(processes, app.Name, ["prepare", app.Name], stop).ConfigureAwait(false);
            if (code == 0 && IsPrepared()) return;
            Log.Warn($"app {app.Name}: image {app.Image} not ready ({lines.LastOrDefault()}); trying again in {wait.TotalSeconds:F0} s");
            await Task.Delay(wait, stop).ConfigureAwait(false);
            wait = TimeSpan.FromTicks(Math.Min(wait.Ticks * 2, LastRetry.Ticks));
        }
    }

    private bool IsPrepared()
    {
        try
        {
            BakedImage image = LoadImage(app);
            return image.Layers.All(l => Directory.Exists(LayerPath(l)));
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            return false;
        }
    }

    public override string LayerPath(string diffIdHex) => AppPaths.StoreLayer(diffIdHex);

    public override string? WritableLayer => AppPaths.RunLayer(app.Name);

    /// <summary>
    /// Each volume's directory, made on first use with the owner and mode the image gives
    /// the target directory (so an unprivileged app can write to it, as Docker's named
    /// volumes are initialised); the image's files there are not copied in.
    /// </summary>
    public override IReadOnlyList<BindMount> Volumes(string rootfs)
    {
        var binds = new List<BindMount>();
        foreach (VolumeMount v in app.Volumes)
        {
            string dir = AppPaths.Volume(app.Name, v.Name);
            if (!Directory.Exists(dir))
            {
                string parent = Path.GetDirectoryName(dir)!;
                Directory.CreateDirectory(parent, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
                string making = dir + ".new";
                if (Directory.Exists(making)) Directory.Delete(making, recursive: true);
                Directory.CreateDirectory(making);
                var (uid, gid, mode) = Sys.LStat(rootfs + v.Target) is { } st && (st.Mode & 0xF000) == 0x4000 ? st : (0u, 0u, 0x41EDu);
                Sys.Chown(making, uid, gid);
                File.SetUnixFileMode(making, (UnixFileMode)(mode & 0xFFF));
                Directory.Move(making, dir);
            }
            binds.Add(new BindMount { Source = dir, Target = v.Target, Readonly = v.Readonly });
        }
        return binds;
    }
}
