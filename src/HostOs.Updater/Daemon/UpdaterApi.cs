using HostOs.Bus;
using Tmds.DBus.Protocol;

namespace HostOs.Updater.Daemon;

/// <summary>
/// <c>org.hostos.Updater1</c> at <c>/org/hostos/Updater1</c> on the system bus (docs/api.md):
/// status for everyone; check, apply and rollback for root and the hostos-admin group.
/// Apply returns at once; <c>Progress</c> signals follow and one <c>Finished</c> ends it.
/// </summary>
public sealed class UpdaterApi(UpdateEngine engine) : IPathMethodHandler
{
    public const string BusName = "org.hostos.Updater1";
    public const string ObjectPath = "/org/hostos/Updater1";
    public const string Interface = "org.hostos.Updater1";
    public const string ErrorPrefix = "org.hostos.Updater1.Error.";

    private DBusConnection? _connection;

    public string Path => ObjectPath;
    public bool HandlesChildPaths => false;

    private static readonly ReadOnlyMemory<byte> InterfaceXml = """
        <interface name="org.hostos.Updater1">
          <!-- running, slot, next_boot, rolled_back_from, rollback_reason, entries, phase, percent,
               last_result, last_check, server, channel, policy -->
          <method name="GetStatus"><arg direction="out" type="a{ss}" name="status"/></method>
          <!-- server and channel: "" for those of /etc/hostos/update.json. What an apply would install. -->
          <method name="Check">
            <arg direction="in" type="s" name="server"/><arg direction="in" type="s" name="channel"/>
            <arg direction="out" type="s" name="result"/>
          </method>
          <!-- Starts an install in the background (Busy while one runs). -->
          <method name="Apply">
            <arg direction="in" type="s" name="server"/><arg direction="in" type="s" name="channel"/>
            <arg direction="out" type="s" name="result"/>
          </method>
          <!-- The other slot's version boots next. -->
          <method name="Rollback"><arg direction="out" type="s" name="result"/></method>
          <signal name="Progress"><arg type="s" name="phase"/><arg type="u" name="percent"/><arg type="s" name="message"/></signal>
          <signal name="Finished"><arg type="b" name="success"/><arg type="s" name="message"/></signal>
        </interface>

        """u8.ToArray();

    /// <summary>The connection signals go out on (null while the bus is away: signals are then dropped).</summary>
    public void Connected(DBusConnection? connection)
    {
        _connection = connection;
        engine.Reboot = connection is null ? null : () => CallManagerReboot(connection);
    }

    public void AttachSignals()
    {
        engine.Progress += EmitProgress;
        engine.Finished += EmitFinished;
    }

    // MessageWriter is a ref struct: each signal writes its arguments in place.
    private void EmitProgress(string phase, uint percent, string message)
    {
        if (_connection is not { } connection) return;
        using MessageWriter w = connection.GetMessageWriter();
        w.WriteSignalHeader(path: ObjectPath, @interface: Interface, member: "Progress", signature: "sus");
        w.WriteString(phase);
        w.WriteUInt32(percent);
        w.WriteString(message);
        connection.TrySendMessage(w.CreateMessage());
    }

    private void EmitFinished(bool ok, string message)
    {
        if (_connection is not { } connection) return;
        using MessageWriter w = connection.GetMessageWriter();
        w.WriteSignalHeader(path: ObjectPath, @interface: Interface, member: "Finished", signature: "bs");
        w.WriteBool(ok);
        w.WriteString(message);
        connection.TrySendMessage(w.CreateMessage());
    }

    public ValueTask HandleMethodAsync(MethodContext context)
    {
        if (!BusService.IsCallFor(context, Interface, InterfaceXml)) return default;
        Message request = context.Request;
        switch ((request.MemberAsString, request.SignatureAsString ?? ""))
        {
            case ("GetStatus", ""):
                // Reads the ESP (mounted briefly, under the lock): off the bus's thread.
                context.DisposesAsynchronously = true;
                _ = Task.Run(() =>
                {
                    using (context)
                    {
                        try
                        {
                            BusService.ReplyDictionary(context, engine.Status());
                        }
                        catch (Exception e)
                        {
                            context.ReplyError(ErrorPrefix + "Failed", e.Message);
                        }
                    }
                });
                return default;
            case ("Check", "ss"):
            {
                Reader r = request.GetBodyReader();
                string server = r.ReadString(), channel = r.ReadString();
                return BusService.Privileged(context, ErrorPrefix, () => engine.CheckAsync(server, channel));
            }
            case ("Apply", "ss"):
            {
                Reader r = request.GetBodyReader();
                string server = r.ReadString(), channel = r.ReadString();
                return BusService.Privileged(context, ErrorPrefix, () => Task.FromResult(engine.StartInstall(server, channel)));
            }
            case ("Rollback", ""):
                return BusService.Privileged(context, ErrorPrefix, () => Task.Run(engine.Rollback));
            default:
                context.ReplyUnknownMethodError();
                return default;
        }
    }

    private static Task CallManagerReboot(DBusConnection connection)
    {
        MessageBuffer message;
        using (MessageWriter w = connection.GetMessageWriter())
        {
            w.WriteMethodCallHeader(destination: "org.hostos.Manager1", path: "/org/hostos/Manager1", @interface: "org.hostos.Manager1", member: "Reboot");
            message = w.CreateMessage();
        }
        return connection.CallMethodAsync(message);
    }
}
