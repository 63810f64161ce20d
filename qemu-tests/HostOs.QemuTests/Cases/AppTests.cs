using System.Diagnostics;
using System.Text.Json;
using HostOs.Images;
using HostOs.QemuTests.Harness;
using HostOs.UnitTests.Images;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>
/// App containers (issue 4): declared on a config drive, pulled by the guest from a real
/// docker-registry on the build host (10.0.2.2 from inside), served on a published port
/// reachable from the host, restarted when killed, back after a reboot with the registry
/// gone (image and volume on state), changed at run time through hostctl, and removed
/// with everything they owned.
/// </summary>
public sealed class AppTests
{
    private const string Cgroups = "/sys/fs/cgroup/hostos-apps";

    /// <summary>The test image's busybox layout (built by ./build.sh), pushed to the registry as hostos/busybox:1.</summary>
    internal static async Task PushBusybox(Registry registry, string work)
    {
        string layout = Path.Combine(Repo.Root, "out", "hostos-test", "oci", "busybox");
        if (!Directory.Exists(layout)) throw new DirectoryNotFoundException($"{layout} is missing: run ./build.sh image/hostos.json qemu-tests/image/hostos-test.json first (./test.sh does)");
        var store = new ImageStore(Path.Combine(work, "store"));
        ImageImport.FromOciLayout(store, layout, "busybox");
        using var client = new RegistryClient(new RegistryOptions { Insecure = [registry.Host] });
        await client.PushAsync(store, "busybox", $"{registry.Host}/hostos/busybox:1");
    }

    private static async Task<string> Page(int port)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        return (await http.GetStringAsync($"http://127.0.0.1:{port}/")).Trim();
    }

    private static async Task<Dictionary<string, JsonElement>> Apps(SerialShell sh)
    {
        using JsonDocument d = JsonDocument.Parse(await sh.CheckAsync("hostctl --json app list"));
        return d.RootElement.EnumerateArray().ToDictionary(e => e.GetProperty("name").GetString()!, e => e.Clone());
    }

    /// <summary>Says <paramref name="text"/> to every connection and closes it, until the listener stops.</summary>
    private static async Task TellEachAsync(System.Net.Sockets.TcpListener listener, string text)
    {
        while (true)
        {
            System.Net.Sockets.TcpClient client;
            try { client = await listener.AcceptTcpClientAsync(); }
            catch (Exception e) when (e is System.Net.Sockets.SocketException or ObjectDisposedException) { return; }
            using (client) await client.GetStream().WriteAsync(System.Text.Encoding.ASCII.GetBytes(text));
        }
    }

    [Fact]
    public async Task AnAppFromTheConfigDrive_PulledServedRestartedKeptAndRemoved()
    {
        string work = Directory.CreateTempSubdirectory("apps-").FullName;
        var registry = new Registry();
        bool registryUp = true;
        try
        {
            await PushBusybox(registry, work);
            string image = $"10.0.2.2:{registry.Port}/hostos/busybox:1";
            await using var vm = QemuMachine.Create("apps");
            int published = QemuMachine.HostPort();
            vm.Forwards.Add((published, 8090));
            // Each run counts itself in its volume and serves the count.
            vm.ExtraDisks.Add(ConfigDrive.Make(work, $$"""
                { "hostname": "app-host",
                  "registries": [ { "host": "10.0.2.2:{{registry.Port}}", "insecure": true } ],
                  "apps": [ {
                    "name": "demo", "image": "{{image}}",
                    "command": ["sh", "-c", "n=$(cat /data/runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/runs; mkdir -p /srv; echo \"$GREETING run $n\" > /srv/index.html; exec httpd -f -p 80 -h /srv"],
                    "env": ["GREETING=hello from an app"],
                    "ports": [ { "host": 8090, "container": 80 } ],
                    "volumes": [ { "name": "data", "target": "/data" } ],
                    "resources": { "memoryMiB": 64, "pids": 32 },
                    "health": { "type": "http", "port": 80, "intervalSeconds": 2 } } ] }
                """, "instance-id: iid-apps-1\n"));
            vm.Start();
            await vm.WaitForReadyAsync(timeout: TimeSpan.FromSeconds(180));
            await vm.Console.WaitForAsync(@"first boot: .*instance iid-apps-1 applied, hostname app-host, .*1 registry, 1 app\(s\)", TimeSpan.FromSeconds(5));
            await vm.Console.WaitForAsync(@"service demo is healthy", TimeSpan.FromSeconds(120));

            // Published from its private network to the host's 8090, forwarded out of the VM.
            Assert.Equal("hello from an app run 1", await Page(published));
            SerialShell sh = await vm.ShellAsync();
            Assert.Equal("app-host", await sh.CheckAsync("hostname"));
            var apps = await Apps(sh);
            Assert.Equal(image, apps["demo"].GetProperty("image").GetString());
            Assert.Equal("ready", apps["demo"].GetProperty("state").GetString());
            Assert.Contains($"pulled {image}", await sh.CheckAsync("hostctl logs demo"));
            string pid = await sh.CheckAsync($"head -n 1 {Cgroups}/demo/cgroup.procs");
            Assert.NotEqual(await sh.CheckAsync("readlink /proc/1/ns/net"), await sh.CheckAsync($"readlink /proc/{pid}/ns/net"));
            Assert.Equal("67108864", await sh.CheckAsync($"cat {Cgroups}/demo/memory.max"));

            // Killed: restarted by its policy, the volume remembers.
            int mark = vm.Console.Mark();
            await sh.CheckAsync($"kill -9 {pid}");
            await vm.Console.WaitForAsync(@"service demo exited \(killed by signal 9\); restart 1", TimeSpan.FromSeconds(30), mark);
            await vm.Console.WaitForAsync(@"service demo is healthy", TimeSpan.FromSeconds(60), mark);
            Assert.Equal("hello from an app run 2", await Page(published));

            // The registry goes away; after a reboot the app is back from state alone.
            registry.Dispose();
            registryUp = false;
            mark = vm.Console.Mark();
            await sh.FireAsync("hostctl reboot");
            await vm.WaitForReadyAsync(mark, TimeSpan.FromSeconds(180));
            await vm.Console.WaitForAsync(@"service demo is healthy", TimeSpan.FromSeconds(60), mark);
            Assert.Equal("hello from an app run 3", await Page(published));
            sh = await vm.ShellAsync();

            // The demo app is on the bridge too (an app's default): the first address.
            await vm.Console.WaitForAsync(@"app demo: on bridge hostos0 as 10\.88\.0\.2", TimeSpan.FromSeconds(5), mark);

            // At run time: a second app from the same image (no pull), on the bridge: its own
            // address, a route out through the host, the lease's DNS, and the world outside the
            // VM reached through the host's NAT (a TCP service of the test's, from inside the app;
            // busybox's static wget crashes in its resolver, so nc).
            using var outside = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
            outside.Start();
            _ = TellEachAsync(outside, "from outside the VM\n");
            await sh.CheckAsync("""echo '{"name":"second","image":"IMAGE","command":["sh","-c","mkdir -p /www; ip -4 addr show eth0 > /www/addr; ip route > /www/route; nc -w 10 10.0.2.2 PORT < /dev/null > /www/outside; echo fetched $? > /www/fetched; exec httpd -f -p 81 -h /www"],"health":{"type":"tcp","port":81}}' > /tmp/second.json"""
                .Replace("IMAGE", image).Replace("PORT", ((System.Net.IPEndPoint)outside.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            Assert.Equal("app second added", await sh.CheckAsync("hostctl app set /tmp/second.json"));
            mark = vm.Console.Mark();
            await vm.Console.WaitForAsync(@"service second is healthy", TimeSpan.FromSeconds(60));
            Assert.DoesNotContain("pulling", await sh.CheckAsync("hostctl logs second"));
            await vm.Console.WaitForAsync(@"network: bridge hostos0 10\.88\.0\.1/16 up", TimeSpan.FromSeconds(5));
            await vm.Console.WaitForAsync(@"app second: on bridge hostos0 as 10\.88\.0\.3", TimeSpan.FromSeconds(5));
            string root = $"/proc/$(head -n 1 {Cgroups}/second/cgroup.procs)/root";
            Assert.Contains("inet 10.88.0.3/16", await sh.CheckAsync($"cat {root}/www/addr"));
            Assert.Contains("default via 10.88.0.1", await sh.CheckAsync($"cat {root}/www/route"));
            Assert.Equal("fetched 0", await sh.CheckAsync($"cat {root}/www/fetched"));
            Assert.Equal("from outside the VM", await sh.CheckAsync($"cat {root}/www/outside"));
            Assert.Contains("nameserver 10.0.2.3", await sh.CheckAsync($"cat {root}/etc/resolv.conf"));
            Assert.Equal("2", await sh.CheckAsync("ls /sys/class/net | grep -c '^hv'"));
            var (code, output) = await sh.RunAsync("""echo '{"name":"web","image":"x/y"}' | hostctl app set -""");
            Assert.Equal(1, code);
            Assert.Contains("'web' is the name of a system container", output);
            (code, output) = await sh.RunAsync("""echo '{"name":"third","image":"x/y","volumes":[{"name":"v","target":"rel"}]}' | hostctl app set -""");
            Assert.Equal(1, code);
            Assert.Contains("target 'rel' must be an absolute path", output);

            // Removal: stopped, its directory, cgroup and published port gone; the image stays while second uses it.
            Assert.StartsWith("app demo removed", await sh.CheckAsync("hostctl app rm demo"));
            Assert.Equal("gone", await sh.CheckAsync("test -e /var/lib/hostos/apps/demo || test -e /sys/fs/cgroup/hostos-apps/demo || echo gone"));
            Assert.False((await Apps(sh)).ContainsKey("demo"));
            await Assert.ThrowsAnyAsync<HttpRequestException>(() => Page(published));
            Assert.Contains("hostos/busybox:1", await sh.CheckAsync("hostos-images list"));
            // The last user removed: the image and its layers go too.
            Assert.Contains("removed image", await sh.CheckAsync("hostctl app rm second"));
            Assert.Equal("0", await sh.CheckAsync("ls /sys/class/net | grep -c '^hv' || true")); // its veth went with it
            Assert.Equal("", await sh.CheckAsync("hostos-images list"));
            Assert.Equal("0", await sh.CheckAsync("ls /var/lib/hostos/images/layers | wc -l"));
            Assert.Equal("0", await sh.CheckAsync("ls /var/lib/hostos/apps | wc -l"));
        }
        finally
        {
            if (registryUp) registry.Dispose();
            Directory.Delete(work, recursive: true);
        }
    }
}
