using System.Text;
using HostOs.Containers.Runtime;
using HostOs.Containers.Spec;
using HostOs.Images;
using HostOs.Platform.Interop;

namespace HostOs.GuestCheck;

/// <summary>
/// hostos-guestcheck image-run STORE LAYOUT NAME: the image chain inside HostOS: an OCI
/// layout imported into a store on the state partition (verified, unpacked as overlay
/// layers), a container run on an overlay root with the image's own command and env, then
/// everything removed and collected. One PASS/FAIL line per step.
/// </summary>
internal static class ImageChecks
{
    public static int Run(string storeRoot, string layout, string name)
    {
        var store = new ImageStore(storeRoot);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        List<StoredImage> images = ImageImport.FromOciLayout(store, layout, name);
        Console.WriteLine($"PASS image-import: {name} with {images[0].Layers.Count} layers in {clock.ElapsedMilliseconds} ms ({images[0].Manifest})");

        ContainerRoot root = store.MountRoot("e2e", name);
        string output;
        ExitStatus status;
        try
        {
            string bundle = Directory.CreateDirectory("/tmp/image-run-bundle").FullName;
            var config = root.Config.Config!;
            var spec = new RuntimeSpec
            {
                OciVersion = "1.0.2",
                Root = new Root { Path = root.Rootfs, Readonly = false },
                Hostname = "image-run",
                Process = new HostOs.Containers.Spec.Process
                {
                    Args = [.. config.Entrypoint ?? [], .. config.Cmd ?? []],
                    Env = config.Env ?? ["PATH=/bin"],
                    Cwd = string.IsNullOrEmpty(config.WorkingDir) ? "/" : config.WorkingDir,
                    NoNewPrivileges = true,
                },
                Mounts = [new Mount { Destination = "/proc", Type = "proc", Source = "proc" }],
                Linux = new LinuxSpec
                {
                    Namespaces = [new() { Type = "pid" }, new() { Type = "mount" }, new() { Type = "uts" }, new() { Type = "ipc" }, new() { Type = "network" }],
                },
            };
            File.WriteAllText(Path.Combine(bundle, "config.json"), SpecLoader.ToJson(spec));
            var (read, write) = Sys.Pipe();
            ContainerProcess c;
            using (write) c = ContainerProcess.Create("image-run", bundle, req => Sys.Spawn(req), write);
            c.Start();
            using (var reader = new StreamReader(new FileStream(read, FileAccess.Read), Encoding.UTF8)) output = reader.ReadToEnd();
            Sys.WaitPid(c.Pid, 0, out status);
            c.Delete();
            Console.WriteLine($"container output: {output.Replace('\n', '|')}");
            bool wrote = File.Exists(Path.Combine(storeRoot, "containers", "e2e", "upper", "tmp", "written"));
            Console.WriteLine(status.Exited && status.Code == 0 && wrote
                ? $"PASS image-container: the image's command ran on its overlay root ({status}), its write landed in the container's upper layer"
                : $"FAIL image-container: {status}, write in upper: {wrote}");
        }
        finally
        {
            store.RemoveRoot("e2e");
        }
        store.Remove(name);
        var gc = store.CollectGarbage();
        bool empty = !store.Blobs.All().Any() && Directory.GetDirectories(Path.Combine(storeRoot, "layers")).Length == 0;
        Console.WriteLine(empty
            ? $"PASS image-gc: {gc.Blobs} blobs and {gc.Layers} layers collected, the store is empty"
            : $"FAIL image-gc: left {store.Blobs.All().Count()} blobs");
        return empty && output.Length > 0 ? 0 : 1;
    }
}
