namespace HostOs.Updater.Payload;

/// <summary>
/// With HOSTOS_UPDATER_TRACE set, the apply's steps on standard error, each with the
/// milliseconds since the process started (its start time in /proc/self/stat, in 1/100 s,
/// against the monotonic clock, both counted from boot in a machine that does not suspend;
/// no time zone or Process object to load): where
/// an apply's time goes, on a machine or in the bench's VM (docs/updates.md). Nothing otherwise.
/// </summary>
internal static class ApplyTrace
{
    public static readonly bool On = Environment.GetEnvironmentVariable("HOSTOS_UPDATER_TRACE") is not null;
    private static readonly long StartMs = On ? StartedMs() : 0;

    public static void Say(string what)
    {
        if (On) Console.Error.WriteLine($"[{Environment.TickCount64 - StartMs} ms] {what}");
    }

    /// <summary>Field 22 of /proc/self/stat: the start, in clock ticks (100 a second) since boot.</summary>
    private static long StartedMs()
    {
        try
        {
            string stat = File.ReadAllText("/proc/self/stat");
            string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[19], System.Globalization.CultureInfo.InvariantCulture) * 10;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return Environment.TickCount64; // no /proc: from the first step instead
        }
    }
}
