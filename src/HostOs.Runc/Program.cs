using HostOs.Containers.Cgroups;
using HostOs.Containers.Cli;

namespace HostOs.Runc;

/// <summary>
/// hostos-runc run in the caller's own process (<see cref="RuncCommand"/>). On HostOS this
/// is /usr/lib/hostos/hostos-runc, which hostos-runc's front runs for what hostos-init does
/// not serve; its stage is hostos-stage beside it (docs/containers.md).
/// </summary>
internal static class Program
{
    private static int Main(string[] args) => new RuncCommand(new RuncSession
    {
        CgroupRoot = Environment.GetEnvironmentVariable("HOSTOS_CGROUP_ROOT") ?? Cgroup.DefaultRoot,
        // Set by the front when hostos-init did not serve the command.
        Note = Environment.GetEnvironmentVariable("HOSTOS_RUNC_NOT_SERVED") is { } why ? $"run in the caller's process: {why}" : null,
    }).Run(args);
}
