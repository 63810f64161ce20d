using System.Globalization;
using HostOs.Bus;
using HostOs.Init.Logging;
using HostOs.Init.Phase2;
using HostOs.Init.Services;
using HostOs.Platform.Interop;
using Tmds.DBus.Protocol;

namespace HostOs.Init.Api;

/// <summary>What the API needs from the running system.</summary>
internal interface IManagedSystem
{
    IReadOnlyList<Service> Services { get; }
    IReadOnlyDictionary<string, string> Status();
    void RequestPower(PowerAction action);
    Containers.AppManager Apps { get; }
}

/// <summary>
/// <c>org.hostos.Manager1</c> at <c>/org/hostos/Manager1</c> on the system bus (docs/api.md):
/// status, services and containers, logs, restarts and power. Reading is open to every
/// local user; changing anything needs uid 0 or membership of the group
/// <see cref="Authorization.AdminGroup"/>, checked against the caller's uid as the bus
/// daemon knows it (GetConnectionUnixUser), never what the caller says.
/// </summary>
internal sealed class ManagerApi(IManagedSystem system) : IPathMethodHandler
{
    public const string BusName = "org.hostos.Manager1";
    public const string ObjectPath = "/org/hostos/Manager1";
    public const string Interface = "org.hostos.Manager1";
    public const string ErrorPrefix = "org.hostos.Manager1.Error.";
    private const int MaxLogRecords = 10000;

    public string Path => ObjectPath;
    public bool HandlesChildPaths => false;

    private static readonly ReadOnlyMemory<byte> InterfaceXml = """
        <interface name="org.hostos.Manager1">
          <!-- version, hostname, machine_id, boot, uptime_seconds, address, ... -->
          <method name="GetStatus"><arg direction="out" type="a{ss}" name="status"/></method>
          <!-- (name, kind: service|container, state, pid, restarts, health, last_exit) -->
          <method name="ListServices"><arg direction="out" type="a(sssiiss)" name="services"/></method>
          <!-- unit ("" for all), records after since (µs since the epoch), at most max (newest kept):
               (time µs, unit, priority, pid, message) -->
          <method name="GetLogs">
            <arg direction="in" type="s" name="unit"/><arg direction="in" type="x" name="since"/><arg direction="in" type="u" name="max"/>
            <arg direction="out" type="a(xsiis)" name="records"/>
          </method>
          <method name="RestartService"><arg direction="in" type="s" name="name"/></method>
          <!-- App containers (docs/apps.md). (name, image, state, health, restarts) -->
          <method name="ListApps"><arg direction="out" type="a(ssssi)" name="apps"/></method>
          <!-- The definition as stored (JSON). -->
          <method name="GetApp"><arg direction="in" type="s" name="name"/><arg direction="out" type="s" name="definition"/></method>
          <!-- Adds the app, or replaces the one of its name; returns what was done. -->
          <method name="SetApp"><arg direction="in" type="s" name="definition"/><arg direction="out" type="s" name="result"/></method>
          <!-- Stops and deletes the app and all it owned (volumes too unless keep_volumes); unused images are pruned. -->
          <method name="RemoveApp"><arg direction="in" type="s" name="name"/><arg direction="in" type="b" name="keep_volumes"/><arg direction="out" type="s" name="result"/></method>
          <!-- A docker-save archive or OCI layout at a path on the machine, stored as reference. -->
          <method name="ImportImage"><arg direction="in" type="s" name="path"/><arg direction="in" type="s" name="reference"/><arg direction="out" type="s" name="result"/></method>
          <method name="Reboot"/>
          <method name="PowerOff"/>
        </interface>

        """u8.ToArray();

    public ValueTask HandleMethodAsync(MethodContext context)
    {
        if (!BusService.IsCallFor(context, Interface, InterfaceXml)) return default;
        Message request = context.Request;
        try
        {
            switch ((request.MemberAsString, request.SignatureAsString ?? ""))
            {
                case ("GetStatus", ""):
                    ReplyStatus(context);
                    break;
                case ("ListServices", ""):
                    ReplyServices(context);
                    break;
                case ("GetLogs", "sxu"):
                {
                    Reader reader = request.GetBodyReader();
                    string unit = reader.ReadString();
                    long since = reader.ReadInt64();
                    uint max = reader.ReadUInt32();
                    ReplyLogs(context, unit, since, (int)Math.Min(max == 0 ? MaxLogRecords : max, MaxLogRecords));
                    break;
                }
                case ("RestartService", "s"):
                {
                    string name = request.GetBodyReader().ReadString();
                    return Privileged(context, () => Restart(context, name));
                }
                case ("ListApps", ""):
                    ReplyApps(context);
                    break;
                case ("GetApp", "s"):
                {
                    string name = request.GetBodyReader().ReadString();
                    BusService.ReplyString(context, system.Apps.Get(name));
                    break;
                }
                case ("SetApp", "s"):
                {
                    string definition = request.GetBodyReader().ReadString();
                    return Privileged(context, () => system.Apps.SetAsync(definition));
                }
                case ("RemoveApp", "sb"):
                {
                    Reader reader = request.GetBodyReader();
                    string name = reader.ReadString();
                    bool keep = reader.ReadBool();
                    return Privileged(context, () => system.Apps.RemoveAsync(name, keep));
                }
                case ("ImportImage", "ss"):
                {
                    Reader reader = request.GetBodyReader();
                    string path = reader.ReadString();
                    string reference = reader.ReadString();
                    return Privileged(context, () => system.Apps.ImportAsync(path, reference));
                }
                case ("Reboot", ""):
                    return Privileged(context, () => Power(context, PowerAction.Reboot));
                case ("PowerOff", ""):
                    return Privileged(context, () => Power(context, PowerAction.PowerOff));
                default:
                    context.ReplyUnknownMethodError();
                    break;
            }
        }
        catch (Containers.AppException e)
        {
            context.ReplyError(ErrorPrefix + e.ErrorName, e.Message);
        }
        catch (Exception e)
        {
            // A fault of ours answers this call with an error; it never costs the API its connection.
            Log.Error($"api: {request.MemberAsString}", e);
            context.ReplyError(ErrorPrefix + "Failed", $"{e.GetType().Name}: {e.Message}");
        }
        return default;
    }

    private void ReplyStatus(MethodContext context) => BusService.ReplyDictionary(context, system.Status());

    private void ReplyServices(MethodContext context)
    {
        using MessageWriter w = context.CreateReplyWriter("a(sssiiss)");
        ArrayStart array = w.WriteArrayStart(DBusType.Struct);
        foreach (Service s in system.Services)
        {
            w.WriteStructureStart();
            w.WriteString(s.Name);
            w.WriteString(s.Options.Kind);
            w.WriteString(s.State.ToString().ToLowerInvariant());
            w.WriteInt32(s.Pid ?? 0);
            w.WriteInt32(s.Restarts);
            w.WriteString(s.Health ?? "");
            w.WriteString(s.LastExit ?? "");
        }
        w.WriteArrayEnd(array);
        context.Reply(w.CreateMessage());
    }

    private void ReplyApps(MethodContext context)
    {
        using MessageWriter w = context.CreateReplyWriter("a(ssssi)");
        ArrayStart array = w.WriteArrayStart(DBusType.Struct);
        foreach (var (app, service) in system.Apps.List())
        {
            w.WriteStructureStart();
            w.WriteString(app.Name);
            w.WriteString(app.Image);
            w.WriteString(service?.State.ToString().ToLowerInvariant() ?? "not started");
            w.WriteString(service?.Health ?? "");
            w.WriteInt32(service?.Restarts ?? 0);
        }
        w.WriteArrayEnd(array);
        context.Reply(w.CreateMessage());
    }

    private static void ReplyLogs(MethodContext context, string unit, long since, int max)
    {
        List<LogRecord> records = Journal.Read(unit.Length == 0 ? null : unit, since, max);
        using MessageWriter w = context.CreateReplyWriter("a(xsiis)");
        ArrayStart array = w.WriteArrayStart(DBusType.Struct);
        foreach (LogRecord r in records)
        {
            w.WriteStructureStart();
            w.WriteInt64(r.RealtimeUs);
            w.WriteString(r.Unit);
            w.WriteInt32(r.Priority);
            w.WriteInt32(r.Pid);
            w.WriteString(r.Message);
        }
        w.WriteArrayEnd(array);
        context.Reply(w.CreateMessage());
    }

    private void Restart(MethodContext context, string name)
    {
        Service? service = system.Services.FirstOrDefault(s => s.Name == name);
        if (service is null)
        {
            context.ReplyError(ErrorPrefix + "NoSuchService", $"no service or container named '{name}'");
            return;
        }
        Log.Info($"api: restart of {name} requested");
        service.RequestRestart();
        BusService.ReplyEmpty(context);
    }

    private void Power(MethodContext context, PowerAction action)
    {
        BusService.ReplyEmpty(context);
        system.RequestPower(action);
    }

    /// <summary>An asynchronous change whose result string is the reply, once the caller is known to be allowed.</summary>
    private static ValueTask Privileged(MethodContext context, Func<Task<string>> change) =>
        BusService.Privileged(context, ErrorPrefix, change);

    /// <summary>Runs <paramref name="action"/> (which replies) once the caller is known to be allowed; otherwise an AccessDenied error.</summary>
    private static ValueTask Privileged(MethodContext context, Action action) =>
        BusService.Privileged(context, ErrorPrefix, () =>
        {
            action();
            return Task.CompletedTask;
        });
}

/// <summary>
/// Keeps <see cref="ManagerApi"/> on the system bus: connects (the bus is a service that
/// may start later or restart), takes the well-known name, and reconnects whenever the
/// connection is lost.
/// </summary>
internal static class ApiServer
{
    public static void Start(IManagedSystem system) =>
        _ = Task.Run(() => BusService.KeepOnBusAsync(new ManagerApi(system), ManagerApi.BusName, Log.Info, Log.Warn));
}
