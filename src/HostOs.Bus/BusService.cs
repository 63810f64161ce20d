using System.Globalization;
using Tmds.DBus.Protocol;

namespace HostOs.Bus;

/// <summary>Who may change the system through the bus APIs: root, and the members of one group.</summary>
public static class Authorization
{
    public const string AdminGroup = "hostos-admin";

    public static bool MayChange(uint uid, string passwd = "/etc/passwd", string group = "/etc/group")
    {
        if (uid == 0) return true;
        string? user = null;
        string? primaryGid = null;
        foreach (string line in ReadLines(passwd))
        {
            string[] f = line.Split(':');
            if (f.Length >= 4 && f[2] == uid.ToString(CultureInfo.InvariantCulture))
            {
                user = f[0];
                primaryGid = f[3];
                break;
            }
        }
        foreach (string line in ReadLines(group))
        {
            string[] f = line.Split(':');
            if (f.Length < 4 || f[0] != AdminGroup) continue;
            if (primaryGid is not null && f[2] == primaryGid) return true;
            return user is not null && f[3].Split(',').Contains(user);
        }
        return false;
    }

    private static IEnumerable<string> ReadLines(string path) => File.Exists(path) ? File.ReadLines(path) : [];
}

/// <summary>An error a bus API answers with its own name (<c>PREFIX.Name</c>) rather than a generic failure.</summary>
public interface INamedBusError
{
    string ErrorName { get; }
}

/// <summary>The plumbing every HostOS bus service shares.</summary>
public static class BusService
{
    public const string SystemBus = "unix:path=/run/dbus/system_bus_socket";

    /// <summary>
    /// Answers introspection and calls to other interfaces; true when the call is for
    /// <paramref name="interfaceName"/> and the service should handle it.
    /// </summary>
    public static bool IsCallFor(MethodContext context, string interfaceName, ReadOnlyMemory<byte> introspectionXml)
    {
        if (context.IsDBusIntrospectRequest)
        {
            context.ReplyIntrospectXml([introspectionXml]);
            return false;
        }
        if (context.Request.InterfaceAsString != interfaceName)
        {
            context.ReplyUnknownMethodError();
            return false;
        }
        return true;
    }

    public static void ReplyString(MethodContext context, string value)
    {
        using MessageWriter w = context.CreateReplyWriter("s");
        w.WriteString(value);
        context.Reply(w.CreateMessage());
    }

    public static void ReplyEmpty(MethodContext context)
    {
        using MessageWriter w = context.CreateReplyWriter(null);
        context.Reply(w.CreateMessage());
    }

    public static void ReplyDictionary(MethodContext context, IEnumerable<KeyValuePair<string, string>> values)
    {
        using MessageWriter w = context.CreateReplyWriter("a{ss}");
        ArrayStart dict = w.WriteDictionaryStart();
        foreach (var (key, value) in values)
        {
            w.WriteDictionaryEntryStart();
            w.WriteString(key);
            w.WriteString(value);
        }
        w.WriteDictionaryEnd(dict);
        context.Reply(w.CreateMessage());
    }

    /// <summary>
    /// Runs <paramref name="action"/> (which replies) once the caller is known to be allowed,
    /// by its uid as the bus daemon knows it (GetConnectionUnixUser), never what the caller
    /// says; otherwise AccessDenied. A failure replies <c>PREFIX.Name</c> for an
    /// <see cref="INamedBusError"/>, else <c>PREFIX.Failed</c>, with its message.
    /// </summary>
    public static ValueTask Privileged(MethodContext context, string errorPrefix, Func<Task> action)
    {
        context.DisposesAsynchronously = true;
        string sender = context.Request.SenderAsString ?? "";
        DBusConnection connection = context.DBusConnection;
        _ = Task.Run(async () =>
        {
            using (context)
            {
                try
                {
                    uint uid = await CallerUidAsync(connection, sender).ConfigureAwait(false);
                    if (!Authorization.MayChange(uid))
                    {
                        context.ReplyError("org.freedesktop.DBus.Error.AccessDenied",
                            $"uid {uid} may not change the system: root or members of '{Authorization.AdminGroup}' only");
                        return;
                    }
                    await action().ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    context.ReplyError(errorPrefix + (e is INamedBusError n ? n.ErrorName : "Failed"), e.Message);
                }
            }
        });
        return default;
    }

    /// <summary>As above, for a change whose result string is the reply.</summary>
    public static ValueTask Privileged(MethodContext context, string errorPrefix, Func<Task<string>> change) =>
        Privileged(context, errorPrefix, async () => ReplyString(context, await change().ConfigureAwait(false)));

    public static Task<uint> CallerUidAsync(DBusConnection connection, string sender)
    {
        MessageBuffer message;
        using (MessageWriter w = connection.GetMessageWriter())
        {
            w.WriteMethodCallHeader(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
                @interface: "org.freedesktop.DBus", signature: "s", member: "GetConnectionUnixUser");
            w.WriteString(sender);
            message = w.CreateMessage();
        }
        return connection.CallMethodAsync(message, static (Message m, object? _) => m.GetBodyReader().ReadUInt32(), null);
    }

    /// <summary>
    /// Keeps <paramref name="handler"/> on the system bus under <paramref name="busName"/>:
    /// connects (the bus is a service that may start later or restart), takes the name, and
    /// reconnects whenever the connection is lost. <paramref name="connected"/> hears of each
    /// new connection (for signals), and of null when it is lost.
    /// </summary>
    public static async Task KeepOnBusAsync(IPathMethodHandler handler, string busName, Action<string> info, Action<string> warn,
        Action<DBusConnection?>? connected = null, string address = SystemBus, CancellationToken cancel = default)
    {
        bool announcedWait = false;
        while (!cancel.IsCancellationRequested)
        {
            try
            {
                using var connection = new DBusConnection(address);
                await connection.ConnectAsync().ConfigureAwait(false);
                connection.AddMethodHandler(handler);
                await connection.RequestNameAsync(busName, RequestNameOptions.Default).ConfigureAwait(false);
                info($"api: {busName} on the system bus");
                announcedWait = false;
                connected?.Invoke(connection);
                using (cancel.Register(connection.Dispose))
                {
                    Exception? why = await connection.DisconnectedAsync().ConfigureAwait(false);
                    connected?.Invoke(null);
                    if (cancel.IsCancellationRequested) return;
                    warn($"api: system bus connection lost ({why?.Message ?? "closed"}); reconnecting");
                }
            }
            catch (Exception e) when (e is DBusConnectionException or DBusExceptionBase or IOException or System.Net.Sockets.SocketException)
            {
                if (!announcedWait) info($"api: waiting for the system bus ({e.Message})");
                announcedWait = true;
            }
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(1), cancel).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }
}
