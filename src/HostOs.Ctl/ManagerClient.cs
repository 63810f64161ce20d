using Tmds.DBus.Protocol;

namespace HostOs.Ctl;

internal sealed record ServiceInfo(string Name, string Kind, string State, int Pid, int Restarts, string Health, string LastExit);
internal sealed record AppInfo(string Name, string Image, string State, string Health, int Restarts);
internal sealed record LogLine(long TimeUs, string Unit, int Priority, int Pid, string Message);

/// <summary>
/// A HostOS bus service as a client sees it: method calls on one object and interface.
/// MessageWriter is a ref struct: every call writes its arguments in place (handing the
/// writer to a delegate would copy it, and the copy's writes would be lost from the message).
/// </summary>
internal abstract class BusClient(DBusConnection connection, string destination, string path, string @interface)
{
    protected DBusConnection Connection => connection;

    protected MessageBuffer Call(string member)
    {
        using MessageWriter w = Connection.GetMessageWriter();
        w.WriteMethodCallHeader(destination: destination, path: path, @interface: @interface, member: member);
        return w.CreateMessage();
    }

    protected MessageBuffer Call(string member, string argument)
    {
        using MessageWriter w = Connection.GetMessageWriter();
        w.WriteMethodCallHeader(destination: destination, path: path, @interface: @interface, signature: "s", member: member);
        w.WriteString(argument);
        return w.CreateMessage();
    }

    protected MessageBuffer Call(string member, string first, string second)
    {
        using MessageWriter w = Connection.GetMessageWriter();
        w.WriteMethodCallHeader(destination: destination, path: path, @interface: @interface, signature: "ss", member: member);
        w.WriteString(first);
        w.WriteString(second);
        return w.CreateMessage();
    }

    protected static string ReadString(Message m, object? _) => m.GetBodyReader().ReadString();

    /// <summary>A method answering <c>a{ss}</c>.</summary>
    protected Task<Dictionary<string, string>> CallDictionaryAsync(string member) =>
        Connection.CallMethodAsync(Call(member), static (Message m, object? _) =>
        {
            Reader r = m.GetBodyReader();
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            ArrayEnd end = r.ReadDictionaryStart();
            while (r.HasNext(end)) result[r.ReadString()] = r.ReadString();
            return result;
        }, null);
}

/// <summary>org.hostos.Manager1 as a client sees it (the interface is in src/HostOs.Init/Api/ManagerApi.cs).</summary>
internal sealed class ManagerClient(DBusConnection connection)
    : BusClient(connection, "org.hostos.Manager1", "/org/hostos/Manager1", "org.hostos.Manager1")
{
    private const string Destination = "org.hostos.Manager1", Path = "/org/hostos/Manager1", Interface = "org.hostos.Manager1";

    /// <summary>The same bus connection, for the updater's API.</summary>
    public UpdaterClient Updater { get; } = new(connection);

    public static async Task<ManagerClient> ConnectAsync(string address)
    {
        var connection = new DBusConnection(address);
        await connection.ConnectAsync().ConfigureAwait(false);
        return new ManagerClient(connection);
    }

    private MessageBuffer CallRemoveApp(string name, bool keepVolumes)
    {
        using MessageWriter w = Connection.GetMessageWriter();
        w.WriteMethodCallHeader(destination: Destination, path: Path, @interface: Interface, signature: "sb", member: "RemoveApp");
        w.WriteString(name);
        w.WriteBool(keepVolumes);
        return w.CreateMessage();
    }

    private MessageBuffer CallGetLogs(string unit, long sinceUs, uint max)
    {
        using MessageWriter w = Connection.GetMessageWriter();
        w.WriteMethodCallHeader(destination: Destination, path: Path, @interface: Interface, signature: "sxu", member: "GetLogs");
        w.WriteString(unit);
        w.WriteInt64(sinceUs);
        w.WriteUInt32(max);
        return w.CreateMessage();
    }

    public Task<Dictionary<string, string>> StatusAsync() => CallDictionaryAsync("GetStatus");

    public Task<List<ServiceInfo>> ServicesAsync() =>
        Connection.CallMethodAsync(Call("ListServices"), static (Message m, object? _) =>
        {
            Reader r = m.GetBodyReader();
            var result = new List<ServiceInfo>();
            ArrayEnd end = r.ReadArrayStart(DBusType.Struct);
            while (r.HasNext(end))
            {
                r.AlignStruct();
                result.Add(new ServiceInfo(r.ReadString(), r.ReadString(), r.ReadString(), r.ReadInt32(), r.ReadInt32(), r.ReadString(), r.ReadString()));
            }
            return result;
        }, null);

    public Task<List<LogLine>> LogsAsync(string unit, long sinceUs, uint max) =>
        Connection.CallMethodAsync(CallGetLogs(unit, sinceUs, max), static (Message m, object? _) =>
        {
            Reader r = m.GetBodyReader();
            var result = new List<LogLine>();
            ArrayEnd end = r.ReadArrayStart(DBusType.Struct);
            while (r.HasNext(end))
            {
                r.AlignStruct();
                result.Add(new LogLine(r.ReadInt64(), r.ReadString(), r.ReadInt32(), r.ReadInt32(), r.ReadString()));
            }
            return result;
        }, null);

    public Task<List<AppInfo>> AppsAsync() =>
        Connection.CallMethodAsync(Call("ListApps"), static (Message m, object? _) =>
        {
            Reader r = m.GetBodyReader();
            var result = new List<AppInfo>();
            ArrayEnd end = r.ReadArrayStart(DBusType.Struct);
            while (r.HasNext(end))
            {
                r.AlignStruct();
                result.Add(new AppInfo(r.ReadString(), r.ReadString(), r.ReadString(), r.ReadString(), r.ReadInt32()));
            }
            return result;
        }, null);

    public Task<string> GetAppAsync(string name) => Connection.CallMethodAsync(Call("GetApp", name), ReadString, null);
    public Task<string> SetAppAsync(string definition) => Connection.CallMethodAsync(Call("SetApp", definition), ReadString, null);
    public Task<string> RemoveAppAsync(string name, bool keepVolumes) => Connection.CallMethodAsync(CallRemoveApp(name, keepVolumes), ReadString, null);
    public Task<string> ImportImageAsync(string path, string reference) => Connection.CallMethodAsync(Call("ImportImage", path, reference), ReadString, null);

    public Task RestartAsync(string name) => Connection.CallMethodAsync(Call("RestartService", name));
    public Task RebootAsync() => Connection.CallMethodAsync(Call("Reboot"));
    public Task PowerOffAsync() => Connection.CallMethodAsync(Call("PowerOff"));
}
