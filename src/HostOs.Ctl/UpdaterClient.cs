using Tmds.DBus.Protocol;

namespace HostOs.Ctl;

/// <summary>A signal of org.hostos.Updater1: Progress (phase, percent, message) or Finished (success, message).</summary>
internal sealed record UpdateSignal(string Member, string Phase, uint Percent, string Message, bool Success);

/// <summary>org.hostos.Updater1 as a client sees it (the interface is in src/HostOs.Updater/Daemon/UpdaterApi.cs).</summary>
internal sealed class UpdaterClient(DBusConnection connection)
    : BusClient(connection, "org.hostos.Updater1", "/org/hostos/Updater1", "org.hostos.Updater1")
{
    private const string Path = "/org/hostos/Updater1", Interface = "org.hostos.Updater1";

    public Task<Dictionary<string, string>> StatusAsync() => CallDictionaryAsync("GetStatus");

    public Task<string> CheckAsync(string server, string channel) => Connection.CallMethodAsync(Call("Check", server, channel), ReadString, null);
    public Task<string> ApplyAsync(string server, string channel) => Connection.CallMethodAsync(Call("Apply", server, channel), ReadString, null);
    public Task<string> RollbackAsync() => Connection.CallMethodAsync(Call("Rollback"), ReadString, null);

    /// <summary>Delivers the updater's signals until disposed (subscribe before asking for an apply).</summary>
    public async Task<IDisposable> WatchAsync(Action<UpdateSignal> onSignal)
    {
        var rule = new MatchRule { Type = MessageType.Signal, Interface = Interface, Path = Path };
        return await Connection.AddMatchAsync(rule,
            static (Message m, object? _) =>
            {
                Reader r = m.GetBodyReader();
                switch (m.MemberAsString)
                {
                    case "Progress":
                        return new UpdateSignal("Progress", r.ReadString(), r.ReadUInt32(), r.ReadString(), true);
                    case "Finished":
                    {
                        bool ok = r.ReadBool();
                        return new UpdateSignal("Finished", "", 100, r.ReadString(), ok);
                    }
                    default:
                        return new UpdateSignal(m.MemberAsString ?? "", "", 0, "", true);
                }
            },
            (Notification<UpdateSignal> n) =>
            {
                if (n.HasValue) onSignal(n.Value);
            },
            false, ObserverFlags.None, null).ConfigureAwait(false);
    }
}
