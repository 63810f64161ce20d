using HostOs.Init.Processes;
using HostOs.Init.Services;
using HostOs.Platform;
using HostOs.Platform.Config;

namespace HostOs.Init.Containers;

/// <summary>An app operation refused or failed, with the D-Bus error name it is answered with.</summary>
internal sealed class AppException(string errorName, string message) : Exception(message), HostOs.Bus.INamedBusError
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
    /// <summary>The apps whose definitions are valid, by name: read from state once at boot, then kept in step with every change.</summary>
    private readonly Dictionary<string, AppContainer> _apps = new(StringComparer.Ordinal);

    /// <summary>
    /// The apps on state, at boot, each after those it names (in passes, so the order on
    /// disk does not matter). A definition that does not parse, or waits for what is not
    /// there, is logged and left alone: an operator's typo must not stop the machine.
    /// </summary>
    public int StartAll()
    {
        if (!Directory.Exists(AppPaths.Root)) return 0;
        foreach (string dir in Directory.EnumerateDirectories(AppPaths.Root).Order(StringComparer.Ordinal))
        {
            string path = Path.Combine(dir, "app.json");
            if (!File.Exists(path)) continue; // volumes kept after a removal, for a later app of that name
            try
            {
                AppContainer app = AppContainer.Parse(File.ReadAllText(path), path);
                if (app.Name != Path.GetFileName(dir)) throw new InvalidDataException($"{path}: names app '{app.Name}', not '{Path.GetFileName(dir)}'");
                CheckAgainstSystem(app, path);
                _apps[app.Name] = app;
            }
            catch (Exception e) when (e is InvalidDataException or IOException or AppException)
            {
                Log.Error($"app {Path.GetFileName(dir)}: not started: {e.Message}");
            }
        }
        var pending = _apps.Values.ToList();
        while (pending.Count > 0)
        {
            var names = supervisor.Services.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
            var ready = pending.Where(a => a.After.All(names.Contains)).ToList();
            if (ready.Count == 0) break;
            foreach (AppContainer app in ready)
            {
                supervisor.Add(Service(app));
                pending.Remove(app);
            }
        }
        foreach (AppContainer app in pending)
        {
            Log.Error($"app {app.Name}: not started: it is after {string.Join(", ", app.After)}, which did not start (missing, or waiting in a circle)");
        }
        return _apps.Count - pending.Count;
    }

    public IEnumerable<(AppContainer App, Service? Service)> List()
    {
        var services = supervisor.Services;
        lock (_apps)
        {
            return _apps.Values.OrderBy(a => a.Name, StringComparer.Ordinal)
                .Select(a => (a, services.FirstOrDefault(s => s.Name == a.Name && s.Options.Kind == a.Kind))).ToList();
        }
    }

    public string Get(string name)
    {
        lock (_apps)
        {
            return _apps.TryGetValue(name, out AppContainer? app) ? app.ToJson() + "\n" : throw new AppException("NoSuchApp", $"no app named '{name}'");
        }
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
            if (WaitsFor(app.After, app.Name, [])) throw new AppException("InvalidApp", $"app '{app.Name}' would wait for itself through 'after'");
            AppContainer? previous;
            lock (_apps) _apps.TryGetValue(app.Name, out previous);
            await supervisor.RemoveAsync(app.Name).ConfigureAwait(false);
            AppPaths.Save(app);
            lock (_apps) _apps[app.Name] = app;
            supervisor.Add(Service(app)); // 'after' names only what exists (CheckAgainstSystem)
            string what = previous is null ? "added" : "replaced";
            Log.Info($"app {app.Name}: {what} (image {app.Image})");
            if (previous is not null && previous.Image != app.Image) _ = PruneAsync(previous.Image);
            return $"app {app.Name} {what}";
        }
        finally
        {
            _changes.Release();
        }
    }

    public async Task<string> RemoveAsync(string name, bool keepVolumes)
    {
        await _changes.WaitAsync().ConfigureAwait(false);
        try
        {
            AppContainer? app;
            lock (_apps)
            {
                if (!_apps.Remove(name, out app)) throw new AppException("NoSuchApp", $"no app named '{name}'");
            }
            await supervisor.RemoveAsync(name).ConfigureAwait(false);
            string dir = AppPaths.Directory(name);
            if (!keepVolumes) Directory.Delete(dir, recursive: true);
            else
            {
                foreach (string entry in Directory.EnumerateFileSystemEntries(dir).Where(e => Path.GetFileName(e) != "volumes").ToList())
                {
                    if (Directory.Exists(entry)) Directory.Delete(entry, recursive: true);
                    else File.Delete(entry);
                }
            }
            Log.Info($"app {name}: removed{(keepVolumes ? " (volumes kept)" : " with its volumes")}");
            string pruned = await PruneAsync(app.Image).ConfigureAwait(false);
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
        var (code, lines) = await ImageToolProcess.RunAsync(processes, "hostos-images", ["import", path, reference], CancellationToken.None).ConfigureAwait(false);
        if (code != 0) throw new AppException("ImportFailed", lines.LastOrDefault() ?? $"exit code {code}");
        return string.Join("; ", lines);
    }

    /// <summary>Drops the image an app let go of, unless another app names it, and what only it used.</summary>
    private async Task<string> PruneAsync(string image)
    {
        var (code, lines) = await ImageToolProcess.RunAsync(processes, "hostos-images", ["prune", image], CancellationToken.None).ConfigureAwait(false);
        return code == 0 ? string.Join("; ", lines) : $"images not pruned: {lines.LastOrDefault()}";
    }

    private Service Service(AppContainer app) =>
        new(ServiceOptions.Of(app), new ContainerLauncher(app, processes, new AppStorage(app, processes)));

    /// <summary>An app may not take the name of a system service or container or another app's host port, and may only wait for what exists.</summary>
    private void CheckAgainstSystem(AppContainer app, string source)
    {
        var services = supervisor.Services;
        if (services.FirstOrDefault(s => s.Name == app.Name && s.Options.Kind != app.Kind) is Service system)
        {
            throw new AppException("InvalidApp", $"{source}: '{app.Name}' is the name of a system {system.Options.Kind}");
        }
        lock (_apps)
        {
            foreach (AppContainer other in _apps.Values.Where(o => o.Name != app.Name))
            {
                if (app.Ports.FirstOrDefault(p => other.Ports.Any(o => o.Host == p.Host)) is PortMapping taken)
                {
                    throw new AppException("InvalidApp", $"{source}: host port {taken.Host} is published by app '{other.Name}' already");
                }
            }
            if (app.After.FirstOrDefault(dep => !services.Any(s => s.Name == dep) && !_apps.ContainsKey(dep)) is string missing)
            {
                throw new AppException("InvalidApp", $"{source}: app '{app.Name}' is after '{missing}', which is no service, container or app");
            }
        }
    }

    /// <summary>Whether following 'after' from <paramref name="deps"/> through the apps reaches <paramref name="name"/>.</summary>
    private bool WaitsFor(IEnumerable<string> deps, string name, HashSet<string> seen)
    {
        foreach (string dep in deps)
        {
            if (dep == name) return true;
            AppContainer? next;
            lock (_apps) _apps.TryGetValue(dep, out next);
            if (seen.Add(dep) && next is not null && WaitsFor(next.After, name, seen)) return true;
        }
        return false;
    }
}
