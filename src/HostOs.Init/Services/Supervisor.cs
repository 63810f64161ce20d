
namespace HostOs.Init.Services;

/// <summary>Starts the declared services in dependency order and stops them in reverse.</summary>
internal sealed class Supervisor
{
    private readonly List<Service> _services;

    public Supervisor(IEnumerable<Service> services) => _services = [.. services];

    public IReadOnlyList<Service> Services => _services;

    public void StartAll()
    {
        var byName = _services.ToDictionary(s => s.Name, StringComparer.Ordinal);
        foreach (Service s in _services)
        {
            s.Start(s.Options.After.Select(a => byName[a]));
        }
    }

    /// <summary>Completes when every required service has been ready once.</summary>
    public Task RequiredReady =>
        Task.WhenAll(_services.Where(s => s.Options.Required).Select(s => s.FirstReady));

    /// <summary>The required services that are not ready now, with why.</summary>
    public IEnumerable<string> Unhealthy() =>
        _services.Where(s => s.Options.Required && s.State != ServiceState.Ready)
                 .Select(s => $"service {s.Name} is {s.State}{(s.LastExit is null ? "" : $" (last exit: {s.LastExit})")}");

    /// <summary>
    /// Stops every service: all at once, except that a service waits until those started
    /// after it (its dependents) have stopped. Graces overlap instead of adding up.
    /// </summary>
    public Task StopAllAsync()
    {
        var stops = new Dictionary<string, Task>(StringComparer.Ordinal);
        foreach (Service s in _services) Stop(s);
        return Task.WhenAll(stops.Values);

        Task Stop(Service s)
        {
            if (stops.TryGetValue(s.Name, out Task? t)) return t;
            Task[] dependents = _services.Where(d => d.Options.After.Contains(s.Name)).Select(Stop).ToArray();
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
