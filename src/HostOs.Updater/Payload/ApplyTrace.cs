namespace HostOs.Updater.Payload;

/// <summary>
/// With HOSTOS_UPDATER_TRACE set, the apply's steps on standard error, each with the
/// milliseconds since the process started: where an apply's time goes, on a machine or in
/// the bench's VM (docs/updates.md "Where the time goes"). Nothing otherwise.
/// </summary>
internal static class ApplyTrace
{
    private static readonly bool On = Environment.GetEnvironmentVariable("HOSTOS_UPDATER_TRACE") is not null;
    private static readonly DateTime Start = On ? System.Diagnostics.Process.GetCurrentProcess().StartTime : default;

    public static void Say(string what)
    {
        if (On) Console.Error.WriteLine($"[{(DateTime.Now - Start).TotalMilliseconds:F0} ms] {what}");
    }
}
