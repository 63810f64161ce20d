using System.Runtime.ExceptionServices;

namespace HostOs.Init.Processes;

/// <summary>
/// Runs a function on an OS thread of its own and waits for it: for what must not touch
/// the calling thread's state (unshare and setns act on the calling thread only, FACTS.md;
/// the thread ends with whatever namespaces it joined). Its exception is rethrown as is.
/// </summary>
internal static class ThrowawayThread
{
    public static T Run<T>(string name, Func<T> function)
    {
        T result = default!;
        ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                result = function();
            }
            catch (Exception e)
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }
        }) { IsBackground = true, Name = name };
        thread.Start();
        thread.Join();
        failure?.Throw();
        return result;
    }
}
