namespace HostOs.Platform;

/// <summary>
/// An exclusive lock on a file (flock, which .NET takes for FileShare.None), between
/// processes and within one; waits up to a timeout, then says who it is waiting for.
/// </summary>
public static class FileLock
{
    public static IDisposable Acquire(string path, TimeSpan timeout, string what)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (clock.Elapsed < timeout)
            {
                Thread.Sleep(20);
            }
            catch (IOException e)
            {
                throw new IOException($"{what}: still held by another command after {timeout.TotalSeconds:F0} s ({path}): {e.Message}", e);
            }
        }
    }
}
