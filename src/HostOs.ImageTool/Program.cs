using System.Text;
using HostOs.Images;
using HostOs.Platform;
using HostOs.Platform.Config;

namespace HostOs.ImageTool;

/// <summary>
/// hostos-images: the image side of app containers (docs/apps.md), run by the init as a
/// child (its output goes to the app's log) and usable by hand from a debug shell.
/// <list type="bullet">
/// <item><c>prepare APP</c>: resolves the app's image reference to an image in the store
/// (pulled from its registry when the store lacks it) and records it as the app's
/// image.json, which the init mounts from. Nothing is recorded until every blob is
/// verified and every layer unpacked.</item>
/// <item><c>import FILE|DIR REFERENCE</c>: a `docker save` archive or OCI layout, stored as REFERENCE.</item>
/// <item><c>push FILE|DIR REFERENCE [--insecure]</c>: the same, then uploaded to a registry (image pipelines, run.sh's demo).</item>
/// <item><c>prune [REFERENCE...]</c>: the images named (all, when none is) that no app names are dropped, then unreferenced blobs and layers.</item>
/// <item><c>list</c>: the images in the store.</item>
/// </list>
/// Exit code 0 on success, 1 with one line naming the problem on stderr, 2 on bad usage.
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        try
        {
            string store = Environment.GetEnvironmentVariable("HOSTOS_IMAGE_STORE") ?? ImageStore.DefaultRoot;
            string apps = Environment.GetEnvironmentVariable("HOSTOS_APPS") ?? AppPaths.Root;
            string registries = Environment.GetEnvironmentVariable("HOSTOS_REGISTRIES") ?? AppPaths.Registries;
            var tool = new ImageTool(new ImageStore(store), apps, registries, Console.Out.WriteLine);
            switch (args)
            {
                case ["prepare", string app]:
                    tool.PrepareAsync(app, CancellationToken.None).GetAwaiter().GetResult();
                    return 0;
                case ["import", string path, string reference]:
                    tool.Import(path, reference);
                    return 0;
                case ["push", string source, string reference, .. var flags] when flags.All(f => f == "--insecure"):
                    tool.PushAsync(source, reference, insecure: flags.Length > 0).GetAwaiter().GetResult();
                    return 0;
                case ["prune", .. var candidates]:
                    tool.Prune(candidates);
                    return 0;
                case ["list"]:
                    foreach (StoredImage i in tool.Store.Images())
                    {
                        Console.Out.WriteLine($"{i.Name}\t{i.Manifest}\t{i.Layers.Sum(l => l.Size)}\t{i.Created}");
                    }
                    return 0;
                default:
                    Console.Error.WriteLine("usage: hostos-images prepare APP | import FILE|DIR REFERENCE | push FILE|DIR REFERENCE [--insecure] | prune [REFERENCE...] | list");
                    return 2;
            }
        }
        catch (Exception e) when (e is ImageException or InvalidDataException or IOException or UnauthorizedAccessException
                                      or HttpRequestException or TaskCanceledException or ArgumentException or FormatException)
        {
            Console.Error.WriteLine($"hostos-images: {e.Message}");
            return 1;
        }
    }
}

/// <summary>The commands, on a given store and apps directory (tests point them at temporary ones).</summary>
internal sealed class ImageTool(ImageStore store, string appsRoot, string registriesFile, Action<string> say)
{
    public ImageStore Store => store;

    public async Task PrepareAsync(string app, CancellationToken cancel)
    {
        string dir = Path.Combine(appsRoot, app);
        string definitionPath = Path.Combine(dir, "app.json");
        if (!File.Exists(definitionPath)) throw new InvalidDataException($"app '{app}' has no definition ({definitionPath})");
        AppContainer definition = AppContainer.Parse(File.ReadAllText(definitionPath), definitionPath);
        string reference = definition.Image;
        ImageReference.Parse(reference); // named errors for a malformed reference, before any network
        StoredImage? stored = store.Images().FirstOrDefault(i => i.Name == reference);
        if (stored is null)
        {
            say($"pulling {reference}");
            using var client = new RegistryClient(LoadRegistries());
            long started = Environment.TickCount64;
            stored = await client.PullAsync(reference, store, say, cancel).ConfigureAwait(false);
            say($"pulled {reference} ({stored.Manifest}, {stored.Layers.Count} layers, {stored.Layers.Sum(l => l.Size)} bytes) in {Environment.TickCount64 - started} ms");
        }
        BakedImage image = store.RunImage(stored, reference);
        // The app may have been removed while this ran: never bring its directory back.
        if (!Directory.Exists(dir)) throw new InvalidDataException($"app '{app}' was removed meanwhile");
        AtomicFile.Write(Path.Combine(dir, "image.json"), Encoding.UTF8.GetBytes(InitConfig.ToJson(image) + "\n"), durable: true);
        say($"image {reference} is {stored.Manifest}");
    }

    public void Import(string path, string reference)
    {
        ImageReference.Parse(reference);
        List<StoredImage> added = Directory.Exists(path)
            ? ImageImport.FromOciLayout(store, path, reference)
            : ImageImport.FromArchive(store, path, reference);
        foreach (StoredImage i in added) say($"imported {i.Name} ({i.Manifest})");
    }

    /// <summary>
    /// Pushes a `docker save` archive or OCI layout to a registry as REFERENCE (image
    /// pipelines; run.sh's demo registry): imported into this tool's store first, so every
    /// blob is verified before it leaves, then uploaded blob by blob and the manifest last.
    /// </summary>
    public async Task PushAsync(string source, string reference, bool insecure)
    {
        ImageReference r = ImageReference.Parse(reference);
        Import(source, reference);
        RegistryOptions options = LoadRegistries();
        if (insecure) options.Insecure.Add(r.Registry);
        using var client = new RegistryClient(options);
        await client.PushAsync(store, reference, reference).ConfigureAwait(false);
        say($"pushed {reference}");
    }

    /// <summary>
    /// Drops the <paramref name="candidates"/> (every image when empty) that no app
    /// definition uses, then collects what nothing references. The init names the image an
    /// app let go of, so an image imported for an app not yet set is not swept away.
    /// </summary>
    public void Prune(IReadOnlyCollection<string> candidates)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        if (Directory.Exists(appsRoot))
        {
            foreach (string dir in Directory.EnumerateDirectories(appsRoot))
            {
                string definition = Path.Combine(dir, "app.json");
                if (!File.Exists(definition)) continue;
                try
                {
                    used.Add(AppContainer.Parse(File.ReadAllText(definition), definition).Image);
                }
                catch (InvalidDataException e)
                {
                    // A definition we cannot read may still name an image: keep everything.
                    throw new InvalidDataException($"not pruning: {e.Message}");
                }
            }
        }
        foreach (StoredImage i in store.Images().Where(i => !used.Contains(i.Name) && (candidates.Count == 0 || candidates.Contains(i.Name))).ToList())
        {
            store.Remove(i.Name);
            say($"removed image {i.Name}");
        }
        ImageStore.GcResult gc = store.CollectGarbage();
        say($"collected {gc.Blobs} blobs, {gc.Layers} layers, {gc.Temporary} temporary files ({gc.Bytes} bytes)");
    }

    private RegistryOptions LoadRegistries()
    {
        if (!File.Exists(registriesFile)) return new RegistryOptions();
        List<RegistryCredential> list = RegistryCredential.ParseList(File.ReadAllText(registriesFile), registriesFile);
        return new RegistryOptions
        {
            Credentials = list.Where(r => r.Username is not null).ToDictionary(r => r.Host, r => (r.Username!, r.Password!)),
            Insecure = list.Where(r => r.Insecure).Select(r => r.Host).ToHashSet(),
        };
    }
}
