using System.Diagnostics;
using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>
/// First-boot configuration (issue 4): a cidata config drive (cloud-init's NoCloud) and
/// QEMU's fw_cfg; a broken configuration is reported and the machine boots as it was.
/// </summary>
public sealed class FirstBootTests
{
    [Fact]
    public async Task ConfigDriveIsHonoured_AndABrokenOneIsRefusedWithoutBreakingTheBoot()
    {
        string dir = Directory.CreateTempSubdirectory("cidata-").FullName;
        try
        {
            await using (var vm = QemuMachine.Create("first-boot"))
            {
                vm.DhcpHostname = "from-dhcp";
                vm.ExtraDisks.Add(ConfigDrive.Make(dir, """
                    { "hostname": "edge-1",
                      "healthChecks": [ { "name": "tmp-writable", "exec": ["/usr/bin/sh", "-c", "touch /tmp/.probe"] } ],
                      "registries": [ { "host": "registry.local:5000", "username": "ops", "password": "s3cret" } ],
                      "update": { "server": "https://updates.example/hostos", "channel": "beta" } }
                    """, "instance-id: iid-test-1\nlocal-hostname: ignored-when-user-data-names-one\n"));
                vm.Start();
                await vm.WaitForReadyAsync();
                await vm.Console.WaitForAsync(@"first boot: config drive /dev/vd[b-z]: instance iid-test-1 applied, hostname edge-1, 1 health check\(s\), 1 registry, 0 app\(s\), updates from https://updates\.example/hostos \(beta\)", TimeSpan.FromSeconds(5));
                await vm.Console.WaitForAsync(@"boot assessment: healthy", TimeSpan.FromSeconds(60));
                SerialShell sh = await vm.ShellAsync();
                // The configured name wins over the lease's.
                Assert.Equal("edge-1", await sh.CheckAsync("hostname"));
                Assert.Contains("tmp-writable", await sh.CheckAsync("cat /etc/hostos/health.d/first-boot-tmp-writable.json"));
                Assert.Equal("-rw-------", (await sh.CheckAsync("ls -l /etc/hostos/registries.json")).Split(' ')[0]);
                Assert.Contains("beta", await sh.CheckAsync("cat /etc/hostos/update.json"));
                // Applied once: a reboot with the same drive keeps it and does not apply again.
                int mark = vm.Console.Mark();
                await sh.FireAsync("hostctl reboot");
                await vm.WaitForReadyAsync(mark);
                await vm.Console.WaitForAsync(@"first boot: config drive /dev/vd[b-z]: instance iid-test-1 already applied", TimeSpan.FromSeconds(5), mark);
                sh = await vm.ShellAsync();
                Assert.Equal("edge-1", await sh.CheckAsync("hostname"));
            }

            // A broken configuration: refused by name, the boot healthy with what it had.
            await using (var vm = QemuMachine.Create("first-boot-broken"))
            {
                vm.ExtraDisks.Add(ConfigDrive.Make(dir, """{ "hostname": "bad_name!", "healthChecks": [ { "name": "x", "exec": ["relative"] } ] }""", "instance-id: iid-test-2\n"));
                vm.Start();
                await vm.WaitForReadyAsync();
                await vm.Console.WaitForAsync(@"first boot: configuration REFUSED, nothing of it applied; booting with what this machine had: .*hostname 'bad_name!'.*exec must start with an absolute path", TimeSpan.FromSeconds(5));
                await vm.Console.WaitForAsync(@"boot assessment: healthy", TimeSpan.FromSeconds(60));
                SerialShell sh = await vm.ShellAsync();
                Assert.StartsWith("hostos-", await sh.CheckAsync("hostname"));
            }

            // fw_cfg, as QEMU users pass configuration without a disk.
            await using (var vm = QemuMachine.Create("first-boot-fwcfg"))
            {
                File.WriteAllText(Path.Combine(dir, "fw-user-data"), """{ "hostname": "from-fw-cfg" }""");
                vm.ExtraArgs.AddRange(["-fw_cfg", $"name=opt/org.hostos/user-data,file={Path.Combine(dir, "fw-user-data")}"]);
                vm.Start();
                await vm.WaitForReadyAsync();
                await vm.Console.WaitForAsync(@"first boot: fw_cfg opt/org.hostos/user-data: instance user-data-[0-9a-f]{16} applied, hostname from-fw-cfg", TimeSpan.FromSeconds(5));
                SerialShell sh = await vm.ShellAsync();
                Assert.Equal("from-fw-cfg", await sh.CheckAsync("hostname"));
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
