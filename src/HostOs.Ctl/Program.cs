using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using HostOs.Ctl;
using Tmds.DBus.Protocol;

// hostctl: the operator's command line (docs/api.md). Human tables by default, --json for
// machines. Talks to org.hostos.Manager1 on the system bus ($DBUS_SYSTEM_BUS_ADDRESS or
// /run/dbus/system_bus_socket).
var json = new Option<bool>("--json") { Description = "Machine-readable JSON output", Recursive = true };
var root = new RootCommand("hostctl: operate a HostOS machine") { json };

var status = new Command("status", "The machine: version, host name, boot assessment, address, services");
status.SetAction((p, _) => Run(async m => Output.Status(await m.StatusAsync(), p.GetValue(json))));
root.Add(status);

var services = new Command("services", "Services and containers with their state, restarts and health");
services.SetAction((p, _) => Run(async m => Output.Services(await m.ServicesAsync(), p.GetValue(json))));
root.Add(services);

var unit = new Argument<string?>("name") { Description = "A service or container (all when absent)", Arity = ArgumentArity.ZeroOrOne };
var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing new lines" };
var since = new Option<string?>("--since") { Description = "Only lines after this: 10m, 2h, 1d, a Unix time or an ISO 8601 time" };
var lines = new Option<uint>("--lines", "-n") { Description = "At most this many lines (newest)", DefaultValueFactory = _ => 200 };
var logs = new Command("logs", "Lines of the journal") { unit, follow, since, lines };
logs.SetAction((p, token) => Run(async m =>
{
    long sinceUs = Output.ParseSince(p.GetValue(since), DateTimeOffset.UtcNow);
    string name = p.GetValue(unit) ?? "";
    List<LogLine> batch = await m.LogsAsync(name, sinceUs, p.GetValue(lines));
    Output.Logs(batch, p.GetValue(json));
    if (!p.GetValue(follow)) return;
    long last = batch.Count > 0 ? batch[^1].TimeUs : Math.Max(sinceUs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000 - 1);
    while (!token.IsCancellationRequested)
    {
        await Task.Delay(500, token);
        batch = await m.LogsAsync(name, last, 10000);
        Output.Logs(batch, p.GetValue(json));
        if (batch.Count > 0) last = batch[^1].TimeUs;
    }
}));
root.Add(logs);

var restartName = new Argument<string>("name") { Description = "The service or container" };
var restart = new Command("restart", "Stop a service or container and start it again") { restartName };
restart.SetAction((p, _) => Run(m => m.RestartAsync(p.GetValue(restartName)!)));
root.Add(restart);

// App containers (docs/apps.md).
var app = new Command("app", "App containers: the machine's workload, kept on state");
var appList = new Command("list", "The apps with their image, state and health");
appList.SetAction((p, _) => Run(async m => Output.Apps(await m.AppsAsync(), p.GetValue(json))));
var appName = new Argument<string>("name") { Description = "The app" };
var appShow = new Command("show", "An app's definition as stored (JSON)") { appName };
appShow.SetAction((p, _) => Run(async m => Console.Out.Write(await m.GetAppAsync(p.GetValue(appName)!))));
var appFile = new Argument<string>("file") { Description = "The app's definition (JSON), or - for standard input" };
var appSet = new Command("set", "Add an app, or replace the one of its name (its volumes stay)") { appFile };
appSet.SetAction((p, _) => Run(async m =>
{
    string file = p.GetValue(appFile)!;
    string definition;
    try
    {
        definition = file == "-" ? await Console.In.ReadToEndAsync() : await File.ReadAllTextAsync(file);
    }
    catch (Exception e) when (e is IOException or UnauthorizedAccessException)
    {
        throw new FormatException($"cannot read {file}: {e.Message}");
    }
    Console.WriteLine(await m.SetAppAsync(definition));
}));
var keepVolumes = new Option<bool>("--keep-volumes") { Description = "Keep the app's volumes on state (for a later app of the same name)" };
var appRemove = new Command("rm", "Stop an app and delete everything it owned: definition, writable layer, volumes; unused images are pruned") { appName, keepVolumes };
appRemove.SetAction((p, _) => Run(async m => Console.WriteLine(await m.RemoveAppAsync(p.GetValue(appName)!, p.GetValue(keepVolumes)))));
var importPath = new Argument<string>("path") { Description = "A docker save archive or OCI image layout, at an absolute path on the machine" };
var importReference = new Argument<string>("reference") { Description = "The name apps use for it, e.g. registry.example/team/app:1.2" };
var appImport = new Command("import", "Put an image into the store without a registry") { importPath, importReference };
appImport.SetAction((p, _) => Run(async m => Console.WriteLine(await m.ImportImageAsync(Path.GetFullPath(p.GetValue(importPath)!), p.GetValue(importReference)!))));
app.Add(appList);
app.Add(appShow);
app.Add(appSet);
app.Add(appRemove);
app.Add(appImport);
root.Add(app);

// Updates (docs/updates.md): org.hostos.Updater1.
var update = new Command("update", "OS updates: A/B slots, the update repository, rollback");
var updateServer = new Option<string?>("--server") { Description = "The update repository (default: /etc/hostos/update.json's)" };
var updateChannel = new Option<string?>("--channel") { Description = "The channel (default: /etc/hostos/update.json's, else stable)" };
var updateStatus = new Command("status", "The running version and slot, what boots next, a rollback and why, the updater's state");
updateStatus.SetAction((p, _) => Run(async m => Output.UpdateStatus(await m.Updater.StatusAsync(), p.GetValue(json))));
var updateCheck = new Command("check", "What an update would install now") { updateServer, updateChannel };
updateCheck.SetAction((p, _) => Run(async m => Console.WriteLine(await m.Updater.CheckAsync(p.GetValue(updateServer) ?? "", p.GetValue(updateChannel) ?? ""))));
var updateApply = new Command("apply", "Install the newest release into the other slot, with progress; the next boot starts it") { updateServer, updateChannel };
updateApply.SetAction((p, token) => Run(async m =>
{
    var finished = new TaskCompletionSource<UpdateSignal>(TaskCreationOptions.RunContinuationsAsynchronously);
    var bar = new ProgressBar(Console.IsOutputRedirected);
    using (await m.Updater.WatchAsync(s =>
    {
        if (s.Member == "Progress") bar.Show(s.Phase, s.Percent, s.Message);
        else if (s.Member == "Finished") finished.TrySetResult(s);
    }))
    {
        Console.WriteLine(await m.Updater.ApplyAsync(p.GetValue(updateServer) ?? "", p.GetValue(updateChannel) ?? ""));
        UpdateSignal end = await finished.Task.WaitAsync(token);
        bar.Done();
        if (!end.Success) throw new UpdateFailedException(end.Message);
        Console.WriteLine(end.Message);
    }
}));
var updateRollback = new Command("rollback", "Make the other slot's version the next boot (then reboot)");
updateRollback.SetAction((_, _) => Run(async m => Console.WriteLine(await m.Updater.RollbackAsync())));
update.Add(updateStatus);
update.Add(updateCheck);
update.Add(updateApply);
update.Add(updateRollback);
root.Add(update);

var reboot = new Command("reboot", "Stop everything in order and reboot");
reboot.SetAction((_, _) => Run(m => m.RebootAsync()));
root.Add(reboot);
var poweroff = new Command("poweroff", "Stop everything in order and power off");
poweroff.SetAction((_, _) => Run(m => m.PowerOffAsync()));
root.Add(poweroff);

return await root.Parse(args).InvokeAsync();

static async Task<int> Run(Func<ManagerClient, Task> action)
{
    string address = Environment.GetEnvironmentVariable("DBUS_SYSTEM_BUS_ADDRESS") is { Length: > 0 } a ? a : "unix:path=/run/dbus/system_bus_socket";
    try
    {
        ManagerClient manager = await ManagerClient.ConnectAsync(address);
        await action(manager);
        return 0;
    }
    catch (DBusErrorReplyException e)
    {
        Output.Error(e.ErrorName != "org.freedesktop.DBus.Error.ServiceUnknown" ? e.ErrorMessage
            : e.ErrorMessage.Contains("Updater1", StringComparison.Ordinal) ? "the updater (org.hostos.Updater1) is not on the bus: is its service running?"
            : "the init's API (org.hostos.Manager1) is not on the bus");
        return 1;
    }
    catch (UpdateFailedException e)
    {
        Output.Error($"update failed: {e.Message}");
        return 1;
    }
    catch (Exception e) when (e is DBusConnectionException or DBusExceptionBase or System.Net.Sockets.SocketException or IOException)
    {
        Output.Error($"cannot reach the system bus at {address}: {e.Message}");
        return 1;
    }
    catch (FormatException e)
    {
        Output.Error(e.Message);
        return 2;
    }
    catch (OperationCanceledException)
    {
        return 0;
    }
}

namespace HostOs.Ctl
{
    internal sealed class UpdateFailedException(string message) : Exception(message);

    /// <summary>One line redrawn in place on a terminal; a line per phase and per tenth otherwise (logs, pipes).</summary>
    internal sealed class ProgressBar(bool redirected)
    {
        private string _phase = "";
        private uint _tenth = uint.MaxValue;
        private bool _drawn;

        public void Show(string phase, uint percent, string message)
        {
            if (redirected)
            {
                if (phase == _phase && percent / 10 == _tenth) return;
                _phase = phase;
                _tenth = percent / 10;
                Console.WriteLine($"{phase} {percent}%: {message}");
                return;
            }
            int filled = (int)Math.Min(30, percent * 30 / 100);
            Console.Write($"\r[{new string('#', filled)}{new string('.', 30 - filled)}] {percent,3}% {phase,-11} ");
            _drawn = true;
        }

        public void Done()
        {
            if (_drawn) Console.WriteLine();
        }
    }

    internal static class Output
    {
        private static readonly string[] UpdateOrder = ["running", "slot", "next_boot", "rolled_back_from", "rollback_reason", "phase", "percent", "last_result", "last_check", "server", "channel", "policy", "entries"];

        public static void UpdateStatus(Dictionary<string, string> status, bool json)
        {
            if (!json && status.GetValueOrDefault("rolled_back_from") is not { Length: > 0 })
            {
                status.Remove("rolled_back_from");
                status.Remove("rollback_reason");
            }
            var ordered = UpdateOrder.Where(status.ContainsKey).Concat(status.Keys.Where(k => !UpdateOrder.Contains(k)).Order())
                .ToDictionary(k => k, k => status[k]);
            if (json)
            {
                Status(ordered, json: true);
                return;
            }
            foreach (var (k, v) in ordered) Console.WriteLine($"{k,-16}  {v}");
        }

        private static readonly string[] StatusOrder = ["version", "hostname", "machine_id", "boot", "uptime_seconds", "address", "services"];

        public static void Error(string message) => Console.Error.WriteLine($"hostctl: {message}");

        public static void Status(Dictionary<string, string> status, bool json)
        {
            var keys = StatusOrder.Where(status.ContainsKey).Concat(status.Keys.Where(k => !StatusOrder.Contains(k)).Order()).ToList();
            if (json)
            {
                WriteJson(w =>
                {
                    w.WriteStartObject();
                    foreach (string k in keys) w.WriteString(k, status[k]);
                    w.WriteEndObject();
                });
                return;
            }
            int width = keys.Max(k => k.Length);
            foreach (string k in keys) Console.WriteLine($"{k.PadRight(width)}  {status[k]}");
        }

        public static void Services(List<ServiceInfo> list, bool json)
        {
            if (json)
            {
                WriteJson(w =>
                {
                    w.WriteStartArray();
                    foreach (ServiceInfo s in list)
                    {
                        w.WriteStartObject();
                        w.WriteString("name", s.Name);
                        w.WriteString("kind", s.Kind);
                        w.WriteString("state", s.State);
                        if (s.Pid > 0) w.WriteNumber("pid", s.Pid); else w.WriteNull("pid");
                        w.WriteNumber("restarts", s.Restarts);
                        if (s.Health.Length > 0) w.WriteString("health", s.Health); else w.WriteNull("health");
                        if (s.LastExit.Length > 0) w.WriteString("lastExit", s.LastExit); else w.WriteNull("lastExit");
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                });
                return;
            }
            Console.Write(Table(["NAME", "KIND", "STATE", "PID", "RESTARTS", "HEALTH", "LAST EXIT"],
                list.Select(s => new[] { s.Name, s.Kind, s.State, s.Pid > 0 ? s.Pid.ToString(CultureInfo.InvariantCulture) : "-",
                    s.Restarts.ToString(CultureInfo.InvariantCulture), s.Health.Length > 0 ? s.Health : "-", s.LastExit.Length > 0 ? s.LastExit : "-" })));
        }

        public static void Apps(List<AppInfo> list, bool json)
        {
            if (json)
            {
                WriteJson(w =>
                {
                    w.WriteStartArray();
                    foreach (AppInfo a in list)
                    {
                        w.WriteStartObject();
                        w.WriteString("name", a.Name);
                        w.WriteString("image", a.Image);
                        w.WriteString("state", a.State);
                        if (a.Health.Length > 0) w.WriteString("health", a.Health); else w.WriteNull("health");
                        w.WriteNumber("restarts", a.Restarts);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                });
                return;
            }
            Console.Write(Table(["NAME", "IMAGE", "STATE", "HEALTH", "RESTARTS"],
                list.Select(a => new[] { a.Name, a.Image, a.State, a.Health.Length > 0 ? a.Health : "-", a.Restarts.ToString(CultureInfo.InvariantCulture) })));
        }

        public static void Logs(List<LogLine> lines, bool json)
        {
            var output = new StringBuilder();
            foreach (LogLine l in lines)
            {
                if (json)
                {
                    using var buffer = new MemoryStream();
                    using (var w = new Utf8JsonWriter(buffer))
                    {
                        w.WriteStartObject();
                        w.WriteString("time", Time(l.TimeUs));
                        w.WriteString("unit", l.Unit);
                        w.WriteNumber("priority", l.Priority);
                        if (l.Pid > 0) w.WriteNumber("pid", l.Pid);
                        w.WriteString("message", l.Message);
                        w.WriteEndObject();
                    }
                    output.Append(Encoding.UTF8.GetString(buffer.ToArray())).Append('\n');
                }
                else
                {
                    output.Append(Time(l.TimeUs)).Append(' ').Append(l.Unit);
                    if (l.Pid > 0) output.Append('[').Append(l.Pid.ToString(CultureInfo.InvariantCulture)).Append(']');
                    output.Append(": ").Append(l.Message).Append('\n');
                }
            }
            Console.Out.Write(output.ToString());
            Console.Out.Flush();
        }

        private static string Time(long us) =>
            DateTimeOffset.FromUnixTimeMilliseconds(us / 1000).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

        /// <summary>"10m", "2h", "1d", "30s" ago; a Unix time in seconds; or an ISO 8601 time. Null: the beginning.</summary>
        public static long ParseSince(string? text, DateTimeOffset now)
        {
            if (string.IsNullOrEmpty(text)) return 0;
            if (text.Length > 1 && "smhd".Contains(text[^1]) && double.TryParse(text[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out double n) && n >= 0)
            {
                TimeSpan ago = text[^1] switch { 's' => TimeSpan.FromSeconds(n), 'm' => TimeSpan.FromMinutes(n), 'h' => TimeSpan.FromHours(n), _ => TimeSpan.FromDays(n) };
                return (now - ago).ToUnixTimeMilliseconds() * 1000;
            }
            if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long seconds)) return seconds * 1_000_000;
            if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out DateTimeOffset t)) return t.ToUnixTimeMilliseconds() * 1000;
            throw new FormatException($"--since '{text}' is neither a duration (10m, 2h, 1d), a Unix time nor an ISO 8601 time");
        }

        public static string Table(string[] header, IEnumerable<string[]> rows)
        {
            var all = new List<string[]> { header };
            all.AddRange(rows);
            int[] widths = Enumerable.Range(0, header.Length).Select(i => all.Max(r => r[i].Length)).ToArray();
            var s = new StringBuilder();
            foreach (string[] row in all)
            {
                s.Append(string.Join("  ", row.Select((c, i) => i == row.Length - 1 ? c : c.PadRight(widths[i]))).TrimEnd()).Append('\n');
            }
            return s.ToString();
        }

        private static void WriteJson(Action<Utf8JsonWriter> write)
        {
            using Stream stdout = Console.OpenStandardOutput();
            using (var w = new Utf8JsonWriter(stdout, new JsonWriterOptions { Indented = true }))
            {
                write(w);
            }
            stdout.WriteByte((byte)'\n');
        }
    }
}
