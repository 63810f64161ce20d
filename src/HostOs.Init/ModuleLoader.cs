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

    /// <summary>
    /// Loads <paramref name="names"/>, or every module in modules.dep when null. A module
    /// that fails (efivarfs says ENODEV on a machine not booted through UEFI) is reported
    /// and the others still load; the failures are returned, each naming its module.
    /// </summary>
    public static List<string> Load(string modulesDir, IEnumerable<string>? names)
    {
        var deps = ModuleDependencies.Parse(File.ReadAllText(Path.Combine(modulesDir, "modules.dep")));
        IReadOnlyList<string> order = deps.LoadOrder(names ?? deps.Names.Order(StringComparer.Ordinal));
        int loaded = 0;
        var failed = new List<string>();
        long start = Stopwatch.GetTimestamp();
        foreach (string relative in order)
        {
            string path = Path.Combine(modulesDir, relative);
            try
            {
                using SafeFileHandle h = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
                if (Sys.FinitModule(h, path)) loaded++;
            }
            catch (IOException e)
            {
                failed.Add($"{ModuleDependencies.NameOf(relative)}: {e.Message}");
            }
        }
        Log.Info($"modules: {loaded} loaded, {order.Count - loaded - failed.Count} already present, {failed.Count} failed " +
                 $"({string.Join(' ', order.Select(ModuleDependencies.NameOf))}) in {Stopwatch.GetElapsedTime(start).TotalMilliseconds:F0} ms");
        foreach (string f in failed) Log.Warn($"module {f}");
        return failed;
    }
}
