using System.Text;
using HostOs.Init.Processes;
using HostOs.Init.Services;
using HostOs.Platform;
using HostOs.Platform.Config;

namespace HostOs.Init.Containers;

/// <summary>An app operation refused or failed, with the D-Bus error name it is answered with.</summary>
internal sealed class AppException(string errorName, string message) : Exception(message)
{
    public string ErrorName { get; } = errorName;
}

/// <summary>
/// The app containers (docs/apps.md): the operator's definitions under
/// /var/lib/hostos/apps/NAME/app.json on state, each supervised as a service (kind "app")
/// through the embedded runtime, with its image prepared by the image tool first. Started
/// at boot after the system's services; added, replaced and removed at run time through
/// the API, one change at a time. Removing an app stops it and deletes its directory
/// (definition, resolved image, writable layer, volumes), then images no app names are
/// dropped from the store with the layers only they used.
/// </summary>
internal sealed class AppManager(Supervisor supervisor, ProcessTable processes)
{
    private readonly SemaphoreSlim _changes = new(1, 1);

    /// <summary>
    /// The apps on state, at boot, each after those it names (in passes, so the order on
    /// disk does not matter). A definition that does not parse, or waits for what is not
    /// there, is logged and left alone: an operator's typo must not stop the machine.
    /// </summary>
    public int StartAll()
    {
        if (!Directory.Exists(AppPaths.Root)) return 0;
        var pending = new List<AppContainer>();
        foreach (string dir in Directory.EnumerateDirectories(AppPaths.Root).Order(StringComparer.Ordinal))
        {
            string path = Path.Combine(dir, "app.json");
            if (!File.Exists(path)) continue; // volumes kept after a removal, for a later app of that name
            try
            {
                AppContainer app = AppContainer.Parse(File.ReadAllText(path), path);
                if (app.Name != Path.GetFileName(dir)) throw new InvalidDataException($"{path}: names app '{app.Name}', not '{Path.GetFileName(dir)}'");
                CheckAgainstSystem(app, path);
                pending.Add(app);
            }
            catch (Exception e) when (e is InvalidDataException or IOException or AppException)
            {
                Log.Error($"app {Path.GetFileName(dir)}: not started: {e.Message}");
            }
        }
        int started = 0;
        while (pending.Count > 0)
        {
            var names = supervisor.Services.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
            var ready = pending.Where(a => a.After.All(names.Contains)).ToList();
            if (ready.Count == 0) break;
            foreach (AppContainer app in ready)
            {
                supervisor.Add(Service(app));
                pending.Remove(app);
                started++;
            }
        }
        foreach (AppContainer app in pending)
        {
            Log.Error($"app {app.Name}: not started: it is after {string.Join(", ", app.After)}, which did not start (missing, or waiting in a circle)");
        }
        return started;
    }

    public IEnumerable<(AppContainer App, Service? Service)> List()
    {
        if (!Directory.Exists(AppPaths.Root)) yield break;
        var services = supervisor.Services;
        foreach (string dir in Directory.EnumerateDirectories(AppPaths.Root).Order(StringComparer.Ordinal))
        {
            string path = Path.Combine(dir, "app.json");
            AppContainer app;
            try
            {
                if (!File.Exists(path)) continue;
                app = AppContainer.Parse(File.ReadAllText(path), path);
            }
            catch (Exception e) when (e is InvalidDataException or IOException)
            {
                continue;
            }
            yield return (app, services.FirstOrDefault(s => s.Name == app.Name && s.Options.Kind == "app"));
        }
    }

    public string Get(string name)
    {
        string path = AppPaths.Definition(CheckName(name));
        if (!File.Exists(path)) throw new AppException("NoSuchApp", $"no app named '{name}'");
        return File.ReadAllText(path);
    }

    /// <summary>Adds the app, or replaces the one of its name (stopped first; its volumes stay).</summary>
    public async Task<string> SetAsync(string json)
    {
        AppContainer app;
        try
        {
            app = AppContainer.Parse(json, "app definition");
        }
        catch (InvalidDataException e)
        {
            throw new AppException("InvalidApp", e.Message);
        }
        await _changes.WaitAsync().ConfigureAwait(false);
        try
        {
            CheckAgainstSystem(app, "app definition");
            string? previousImage = null;
            string path = AppPaths.Definition(app.Name);
            if (File.Exists(path))
            {
                try { previousImage = AppContainer.Parse(File.ReadAllText(path), path).Image; } catch (InvalidDataException) { }
            }
            if (WaitsFor(app.After, app.Name, [])) throw new AppException("InvalidApp", $"app '{app.Name}' would wait for itself through 'after'");
            bool replaced = await supervisor.RemoveAsync(app.Name).ConfigureAwait(false);
            Directory.CreateDirectory(AppPaths.Root, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            Directory.CreateDirectory(AppPaths.Directory(app.Name), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            AtomicFile.Write(path, Encoding.UTF8.GetBytes(app.ToJson() + "\n"), durable: true);
            try
            {
                supervisor.Add(Service(app));
            }
            catch (InvalidOperationException e)
            {
                throw new AppException("InvalidApp", $"app {app.Name} saved but not started: {e.Message}");
            }
            string what = replaced ? "replaced" : "added";
            Log.Info($"app {app.Name}: {what} (image {app.Image})");
            if (previousImage is not null && previousImage != app.Image) _ = PruneAsync();
            return $"app {app.Name} {what}";
        }
        finally
        {
            _changes.Release();
        }
    }

    public async Task<string> RemoveAsync(string name, bool keepVolumes)
    {
        CheckName(name);
        await _changes.WaitAsync().ConfigureAwait(false);
        try
        {
            string dir = AppPaths.Directory(name);
            if (!File.Exists(AppPaths.Definition(name))) throw new AppException("NoSuchApp", $"no app named '{name}'");
            await supervisor.RemoveAsync(name).ConfigureAwait(false);
            foreach (string entry in Directory.EnumerateFileSystemEntries(dir).ToList())
            {
                if (keepVolumes && Path.GetFileName(entry) == "volumes") continue;
                if (Directory.Exists(entry)) Directory.Delete(entry, recursive: true);
                else File.Delete(entry);
            }
            if (!keepVolumes || !Directory.Exists(Path.Combine(dir, "volumes"))) Directory.Delete(dir, recursive: true);
            Log.Info($"app {name}: removed{(keepVolumes ? " (volumes kept)" : " with its volumes")}");
            string pruned = await PruneAsync().ConfigureAwait(false);
            return $"app {name} removed{(keepVolumes ? ", volumes kept" : "")}; {pruned}";
        }
        finally
        {
            _changes.Release();
        }
    }

    /// <summary>Imports a `docker save` archive or OCI layout (a path on the machine) into the store as REFERENCE.</summary>
    public async Task<string> ImportAsync(string path, string reference)
    {
        if (!path.StartsWith('/')) throw new AppException("InvalidArgument", $"'{path}' is not an absolute path on the machine");
        var (code, last, _) = await ImageTool.RunAsync(processes, "hostos-images", ["import", path, reference], CancellationToken.None).ConfigureAwait(false);
        if (code != 0) throw new AppException("ImportFailed", last);
        return last;
    }

    private async Task<string> PruneAsync()
    {
        var (code, last, lines) = await ImageTool.RunAsync(processes, "hostos-images", ["prune"], CancellationToken.None).ConfigureAwait(false);
        return code == 0 ? string.Join("; ", lines) : $"images not pruned: {last}";
    }

    private Service Service(AppContainer app) =>
        new(ServiceOptions.Of(app), new ContainerLauncher(app, processes, new AppStorage(app, processes)));

    /// <summary>An app may not take the name of a system service or container, and may only wait for what exists.</summary>
    private void CheckAgainstSystem(AppContainer app, string source)
    {
        var services = supervisor.Services;
        if (services.Any(s => s.Name == app.Name && s.Options.Kind != "app"))
        {
            throw new AppException("InvalidApp", $"{source}: '{app.Name}' is the name of a system {services.First(s => s.Name == app.Name).Options.Kind}");
        }
        foreach (var (other, _) in List())
        {
            if (other.Name == app.Name) continue;
            foreach (PortMapping p in app.Ports.Where(p => other.Ports.Any(o => o.Host == p.Host)))
            {
                throw new AppException("InvalidApp", $"{source}: host port {p.Host} is published by app '{other.Name}' already");
            }
        }
        foreach (string dep in app.After)
        {
            if (!services.Any(s => s.Name == dep) && !File.Exists(AppPaths.Definition(dep)))
            {
                throw new AppException("InvalidApp", $"{source}: app '{app.Name}' is after '{dep}', which is no service, container or app");
            }
        }
    }

    /// <summary>Whether following 'after' from <paramref name="deps"/> through the apps on state reaches <paramref name="name"/>.</summary>
    private static bool WaitsFor(IEnumerable<string> deps, string name, HashSet<string> seen)
    {
        foreach (string dep in deps)
        {
            if (dep == name) return true;
            if (!seen.Add(dep)) continue;
            string path = AppPaths.Definition(dep);
            if (!File.Exists(path)) continue;
            try
            {
                if (WaitsFor(AppContainer.Parse(File.ReadAllText(path), path).After, name, seen)) return true;
            }
            catch (InvalidDataException)
            {
            }
        }
        return false;
    }

    private static string CheckName(string name) =>
        name.Length is > 0 and <= 63 && name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '_' or '.' or '-') && name[0] is not ('.' or '_' or '-')
            ? name
            : throw new AppException("NoSuchApp", $"'{name}' is not an app name");
}
