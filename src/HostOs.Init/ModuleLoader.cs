using System.Diagnostics;
using HostOs.Platform.Interop;
using HostOs.Platform.Kernel;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Init;

/// <summary>Loads kernel modules with finit_module(2), dependencies first (no modprobe).</summary>
internal static class ModuleLoader
{
    public static string ModulesDirectory(string root = "/") =>
        Path.Combine(root, "lib", "modules", File.ReadAllText("/proc/sys/kernel/osrelease").Trim());

    /// <summary>Loads <paramref name="names"/>, or every module in modules.dep when null.</summary>
    public static void Load(string modulesDir, IEnumerable<string>? names)
    {
        var deps = ModuleDependencies.Parse(File.ReadAllText(Path.Combine(modulesDir, "modules.dep")));
        IReadOnlyList<string> order = deps.LoadOrder(names ?? deps.Names.Order(StringComparer.Ordinal));
        int loaded = 0;
        long start = Stopwatch.GetTimestamp();
        foreach (string relative in order)
        {
            string path = Path.Combine(modulesDir, relative);
            using SafeFileHandle h = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
            if (Sys.FinitModule(h, path)) loaded++;
        }
        Log.Info($"modules: {loaded} loaded, {order.Count - loaded} already present " +
                 $"({string.Join(' ', order.Select(ModuleDependencies.NameOf))}) in {Stopwatch.GetElapsedTime(start).TotalMilliseconds:F0} ms");
    }
}
