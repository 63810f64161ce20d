using System.Diagnostics;

namespace HostOs.Init;

/// <summary>A failure of a named boot step; the message names the step.</summary>
internal sealed class BootStepException(string step, Exception inner)
    : Exception($"boot step '{step}' failed: {inner.Message}", inner)
{
    public string Step { get; } = step;
}

/// <summary>
/// Boot reads as a list of named steps; each logs its name and duration, and a failure
/// names its step (the Talos sequencer's habit).
/// </summary>
internal static class BootStep
{
    public static void Run(string name, Action step)
    {
        long start = Stopwatch.GetTimestamp();
        try
        {
            step();
        }
        catch (Exception e) when (e is not BootStepException)
        {
            Log.Error($"step {name} failed after {Elapsed(start)}: {e.Message}");
            throw new BootStepException(name, e);
        }
        Log.Info($"step {name} done in {Elapsed(start)}");
    }

    /// <summary>A step whose failure is logged and survived: the boot goes on without it.</summary>
    public static bool TryRun(string name, Action step)
    {
        try
        {
            Run(name, step);
            return true;
        }
        catch (BootStepException)
        {
            return false;
        }
    }

    private static string Elapsed(long start) =>
        $"{Stopwatch.GetElapsedTime(start).TotalMilliseconds:F0} ms";
}
