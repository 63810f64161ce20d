using HostOs.Platform;
using HostOs.Platform.Boot;
using HostOs.Platform.Config;
using HostOs.Updater.Payload;
using HostOs.Updater.Repository;
using NSec.Cryptography;

namespace HostOs.Updater.Machine;

/// <summary>
/// One operation on this machine's slots and ESP, whoever asks (the command line or the
/// daemon): one at a time (a lock in /run), the layout discovered, the ESP mounted only
/// for the operation's duration, the settings and trusted keys read afresh each time
/// (an operator may edit /etc/hostos/update.json at any moment).
/// </summary>
public static class MachineSession
{
    private const string RunDirectory = "/run/hostos-updater";
    private const string EspMountPoint = RunDirectory + "/esp";

    public static T Run<T>(Func<SlotUpdater, T> action, Action<string>? say, TimeSpan? waitForLock = null)
    {
        Directory.CreateDirectory(RunDirectory);
        using IDisposable _ = FileLock.Acquire(RunDirectory + "/lock", waitForLock ?? TimeSpan.FromSeconds(5), "hostos-updater");
        var (layout, espPartition) = SlotLayout.Discover();
        using Esp esp = Esp.Mount(espPartition, EspMountPoint);
        return action(new SlotUpdater(layout, esp.Root, () => Trusted(Settings()), say));
    }

    public static UpdateSettings? Settings() =>
        File.Exists(UpdateSettings.Path) ? UpdateSettings.Parse(File.ReadAllText(UpdateSettings.Path), UpdateSettings.Path) : null;

    /// <summary>The root's keys (/usr/lib/hostos/update-keys) and the operator's extra ones.</summary>
    public static List<PublicKey> Trusted(UpdateSettings? settings)
    {
        List<PublicKey> keys = UpdateKeys.LoadTrusted(UpdateKeys.RootKeyDirectory, settings?.Keys);
        return keys.Count > 0 ? keys : throw new PayloadException($"no trusted update keys ({UpdateKeys.RootKeyDirectory} is empty)");
    }

    /// <summary>The running version without the lock or the ESP (read from the kernel command line).</summary>
    public static string RunningVersion() =>
        HostOs.Platform.Kernel.KernelCommandLine.Parse(File.ReadAllText("/proc/cmdline")).Get("hostos.version")
        ?? throw new IOException("/proc/cmdline names no hostos.version: not booted from a HostOS entry");
}

/// <summary>Where releases come from: the server and channel given, else those of /etc/hostos/update.json.</summary>
public sealed class ReleaseSource(HttpClient http, IReadOnlyList<PublicKey> trusted, string server, string channel, Action<string>? say = null)
{
    public string Server => server;
    public string Channel => channel;
    private readonly UpdateClient _client = new(http, new Uri(server.EndsWith('/') ? server : server + "/"), trusted, say);

    public static ReleaseSource FromSettings(HttpClient http, UpdateSettings? settings, string? server, string? channel, Action<string>? say = null) =>
        new(http, MachineSession.Trusted(settings),
            server ?? settings?.Server ?? throw new PayloadException($"no update server: none given and {UpdateSettings.Path} names none"),
            channel ?? settings?.Channel ?? "stable", say);

    /// <summary>The release to install on a machine running <paramref name="current"/>, or null when it is the newest.</summary>
    public (UpdateIndex.Release Release, UpdateIndex.PayloadRef Payload)? Check(string current) =>
        _client.FetchIndex(channel, DateTimeOffset.UtcNow).Choose(current);

    public Stream Open(UpdateIndex.PayloadRef payload) => _client.Open(payload);

    /// <summary>
    /// Installs <paramref name="release"/> from the chosen payload; when that is a delta and
    /// it is refused (the running slot is not the exact bytes it was made from, say), the
    /// release's full payload is taken instead, as update_engine does.
    /// </summary>
    public PayloadManifest Install(SlotUpdater updater, UpdateIndex.Release release, UpdateIndex.PayloadRef payload,
        Action<PayloadApplier.Progress>? progress = null)
    {
        try
        {
            using Stream download = Open(payload);
            return updater.Install(download, allowDowngrade: false, progress);
        }
        catch (PayloadException e) when (payload.From is not null && release.Full is not null)
        {
            say?.Invoke($"the delta from {payload.From} was refused ({e.Message}): taking the full payload {release.Full.Path} ({release.Full.Size} bytes)");
            using Stream full = Open(release.Full);
            return updater.Install(full, allowDowngrade: false, progress);
        }
    }

    public static string Describe(UpdateIndex.Release release, UpdateIndex.PayloadRef payload) =>
        $"{release.Version} ({(payload.From is null ? "full" : $"delta from {payload.From}")}, {payload.Size} bytes, {payload.Path})";
}
