
namespace HostOs.Init.Services;

/// <summary>
/// Starts the declared services in dependency order and stops them in reverse. Services
/// may be added and removed while it runs (app containers, through the API).
/// </summary>
internal sealed class Supervisor
{
    private readonly Lock _gate = new();
    private readonly List<Service> _services;

    public Supervisor(IEnumerable<Service> services) => _services = [.. services];

    public IReadOnlyList<Service> Services
    {
        get { lock (_gate) return [.. _services]; }
    }

    public void StartAll()
    {
        var byName = Services.ToDictionary(s => s.Name, StringComparer.Ordinal);
        foreach (Service s in byName.Values)
        {
            s.Start(s.Options.After.Select(a => byName[a]));
        }
    }

    /// <summary>Adds a service and starts it after those it names in <c>after</c> (which must exist).</summary>
    public void Add(Service service)
    {
        Service[] after;
        lock (_gate)
        {
            if (_services.Any(s => s.Name == service.Name)) throw new InvalidOperationException($"a service named '{service.Name}' exists");
            after = service.Options.After.Select(a => _services.FirstOrDefault(s => s.Name == a)
                ?? throw new InvalidOperationException($"'{service.Name}' is after '{a}', which does not exist")).ToArray();
            _services.Add(service);
        }
        service.Start(after);
    }

    /// <summary>Stops a service (as at shutdown) and forgets it; false when there is none of that name.</summary>
    public async Task<bool> RemoveAsync(string name)
    {
        Service? service;
        lock (_gate) service = _services.FirstOrDefault(s => s.Name == name);
        if (service is null) return false;
        await StopAfter(service, []).ConfigureAwait(false);
        service.Release();
        lock (_gate) _services.Remove(service);
        return true;
    }

    /// <summary>Completes when every required service (of those there now) has been ready once.</summary>
    public Task RequiredReady =>
        Task.WhenAll(Services.Where(s => s.Options.Required).Select(s => s.FirstReady));

    /// <summary>The required services that are not ready now, with why.</summary>
    public IEnumerable<string> Unhealthy() =>
        Services.Where(s => s.Options.Required && s.State != ServiceState.Ready)
                .Select(s => $"{s.Options.Kind} {s.Name} is {s.State}{(s.LastExit is null ? "" : $" (last exit: {s.LastExit})")}");

    /// <summary>
    /// Stops every service: all at once, except that a service waits until those started
    /// after it (its dependents) have stopped. Graces overlap instead of adding up.
    /// </summary>
    public Task StopAllAsync()
    {
        var services = Services;
        var stops = new Dictionary<string, Task>(StringComparer.Ordinal);
        foreach (Service s in services) Stop(s);
        return Task.WhenAll(stops.Values);

        Task Stop(Service s)
        {
            if (stops.TryGetValue(s.Name, out Task? t)) return t;
            Task[] dependents = services.Where(d => d.Options.After.Contains(s.Name)).Select(Stop).ToArray();
            t = StopAfter(s, dependents);
            stops[s.Name] = t;
            return t;
        }
    }

    private static async Task StopAfter(Service service, Task[] dependents)
    {
        await Task.WhenAll(dependents).ConfigureAwait(false);
        try
        {
            await service.StopAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Log.Error($"stopping {service.Name}", e);
        }
    }
}
