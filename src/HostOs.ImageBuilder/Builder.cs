using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using HostOs.Platform.Boot;
using HostOs.Platform.Disk;
using HostOs.Verity;
using HostOs.Platform.Kernel;
using HostOs.Platform.Config;
using HostOs.Images;

namespace HostOs.ImageBuilder;

/// <summary>
/// Turns a validated image definition into: the kernel, the initramfs (our init, libc and
/// the phase-1 modules), the read-only EROFS root (reproducible) with its dm-verity hash
/// tree after it, the ESP with
/// systemd-boot and a counted BLS entry, a fresh ext4 state, and the GPT disk holding
/// them. Needs no loop device and no mount: every file system is built from a file.
/// </summary>
internal sealed class Builder(ImageDefinition image, string repoRoot, string outDir, Apt apt)
{
    public const string SystemdBootPackage = "systemd-boot-efi";
    private readonly string _work = Path.Combine(outDir, "work");

    /// <summary>
    /// The dm-verity salt of every HostOS root: the same for all versions, so that a block
    /// that did not change keeps its hash and a delta carries only the tree's changed
    /// branches (a salt per build would change all 1/128 of the image the tree is). A salt
    /// guards against precomputed collisions across systems; it is not a secret.
    /// </summary>
    private static readonly byte[] VeritySalt = SHA256.HashData("HostOS dm-verity salt, version 1"u8);
    private VerityParameters? _verity;

    public void Build()
    {
        Directory.CreateDirectory(_work);
        string kernelTree = Step("kernel", () => apt.Unpack(ResolveKernelPackage()));
        string kver = Directory.GetDirectories(Path.Combine(kernelTree, "lib", "modules")).Select(Path.GetFileName).Single()!;
        string modulesDir = Path.Combine(kernelTree, "lib", "modules", kver);
        if (!File.Exists(Path.Combine(modulesDir, "modules.dep")))
        {
            // Debian's kernel package ships no modules.dep (FACTS.md).
            Tool.Run("depmod", ["-b", kernelTree, kver]);
        }
        var deps = ModuleDependencies.Parse(File.ReadAllText(Path.Combine(modulesDir, "modules.dep")));
        File.Copy(Path.Combine(kernelTree, "boot", $"vmlinuz-{kver}"), Path.Combine(outDir, "vmlinuz"), true);

        var libraryTrees = Step("packages", () => image.Packages.Select(p => apt.Unpack(p.Name)).ToList());
        string init = Path.Combine(repoRoot, "out", "publish", "hostos-init", "hostos-init");

        Step("initramfs", () =>
        {
            var tree = new FsTree(usrMerge: true);
            tree.AddFile("/usr/sbin/hostos-init", init, 0x1ED);
            tree.AddSymlink("/init", "usr/sbin/hostos-init");
            tree.AddContent("/etc/initrd-release", $"NAME=\"{image.Name} initramfs\"\nVERSION_ID={image.Version}\n");
            foreach (string d in new[] { "/dev", "/proc", "/sys", "/sysroot", "/run" }) tree.AddDirectory(d);
            tree.AddCharDevice("/dev/console", 5, 1, 0x180);
            AddModules(tree, deps, modulesDir, kver, image.Kernel!.InitrdModules);
            new ElfDependencies(libraryTrees).Resolve(tree);
            using var f = File.Create(Path.Combine(outDir, "initrd.img"));
            tree.WriteCpio(f);
        });

        ImageStore? images = image.Images.Count == 0 ? null : Step("images", ImportImages);

        string rootImage = Path.Combine(outDir, "root.img");
        Step("root", () =>
        {
            FsTree tree = RootTree(deps, modulesDir, kver, init, libraryTrees);
            string staging = Path.Combine(_work, "root");
            tree.Materialize(staging);
            if (images is not null) BakeImages(images, staging);
            File.Delete(rootImage);
            // Files of our own tree are root's (the builder runs as root when it bakes
            // images, and --all-root says so otherwise); baked layers keep their owners.
            List<string> args = ["--quiet", "-T0", $"-U{DerivedGuid("root")}", rootImage, staging];
            if (images is null) args.Insert(0, "--all-root");
            Tool.Run("mkfs.erofs", args);
            // The hash tree right after the file system, in the same image: one partition,
            // one payload target, one SHA-256 over both. Its root hash goes on the command line.
            _verity = VerityTree.Append(rootImage, VeritySalt);
        });

        DiskLayout layout = new(image.Disk!.EspMiB, image.Disk.SlotMiB, image.Disk.StateMiB);
        long rootSize = new FileInfo(rootImage).Length;
        if (rootSize > (long)layout.SlotMiB << 20)
        {
            throw new InvalidDataException($"root image is {rootSize >> 20} MiB, larger than disk.slotMiB ({layout.SlotMiB})");
        }
        string espImage = Step("esp", () => BuildEsp(layout, kver));
        string stateImage = Step("state", () => BuildState(layout));
        Step("disk", () => BuildDisk(layout, espImage, rootImage, stateImage));

        var manifest = new Dictionary<string, string>
        {
            ["name"] = image.Name!,
            ["version"] = image.Version!,
            ["kernel"] = kver,
            ["cmdline"] = Cmdline("a"),
            ["rootSha256"] = Apt.Sha256(rootImage),
            ["rootSize"] = rootSize.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        File.WriteAllText(Path.Combine(outDir, "manifest.json"),
            JsonSerializer.Serialize(manifest, ManifestJson.Default.DictionaryStringString) + "\n");
        Directory.Delete(_work, true);
    }

    /// <summary>
    /// Every image of the definition, built from its description or taken from its OCI
    /// layout, imported into a scratch image store: blobs verified, layers unpacked once
    /// (overlayfs form: whiteouts, opaque directories, owners, xattrs).
    /// </summary>
    private ImageStore ImportImages()
    {
        if (!Environment.IsPrivilegedProcess)
        {
            throw new InvalidOperationException("baking container images needs root (layers keep their owners and device nodes)");
        }
        string storeDir = Path.Combine(_work, "images");
        if (Directory.Exists(storeDir)) Directory.Delete(storeDir, true);
        var store = new ImageStore(storeDir);
        foreach (ImageSource source in image.Images)
        {
            string layout;
            if (source.Build is string definition)
            {
                layout = Path.Combine(outDir, "oci", source.Name);
                OciImageBuilder.Build(source.Name, Path.Combine(repoRoot, definition), layout, _work, apt, repoRoot);
            }
            else layout = Path.Combine(repoRoot, source.Layout!);
            StoredImage stored = ImageImport.FromOciLayout(store, layout, source.Name).Single();
            Console.WriteLine($"  image {source.Name}: {stored.Manifest}, {stored.Layers.Count} layer(s)");
        }
        return store;
    }

    /// <summary>
    /// The imported images into the root: their layers under /usr/lib/hostos/images/layers
    /// (each once), and per image a <see cref="BakedImage"/> with its run defaults.
    /// </summary>
    private void BakeImages(ImageStore store, string staging)
    {
        string dir = staging + BakedImage.Directory;
        Directory.CreateDirectory(Path.Combine(dir, "layers"));
        // Root only, as the image store: layers keep their setuid files.
        File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        foreach (StoredImage stored in store.Images())
        {
            foreach (StoredLayer layer in stored.Layers)
            {
                Digest diffId = Digest.Parse(layer.DiffId, "diff id");
                string target = staging + BakedImage.LayerPath(diffId.Hex);
                if (!Directory.Exists(target)) Directory.Move(store.LayerPath(diffId), target);
            }
            BakedImage baked = store.RunImage(stored, stored.Name);
            File.WriteAllText(staging + BakedImage.PathOf(stored.Name), InitConfig.ToJson(baked) + "\n");
        }
    }

    /// <summary>
    /// The versioned kernel image package: a metapackage (linux-image-cloud-amd64) names it
    /// in its Depends; a real image package depends on no other linux-image package.
    /// </summary>
    private string ResolveKernelPackage()
    {
        string name = image.Kernel!.Package!;
        string? real = apt.Field(name, "Depends").Split(',')
            .Select(d => d.Trim().Split(' ')[0])
            .FirstOrDefault(d => d.StartsWith("linux-image-", StringComparison.Ordinal));
        if (real is null) return name;
        Console.WriteLine($"  kernel {name} -> {real}");
        return real;
    }

    private FsTree RootTree(ModuleDependencies deps, string modulesDir, string kver, string init, List<string> libraryTrees)
    {
        var tree = new FsTree(usrMerge: true);
        tree.AddFile("/usr/sbin/hostos-init", init, 0x1ED);
        tree.AddSymlink("/usr/sbin/init", "hostos-init");
        foreach (string d in new[] { "/dev", "/proc", "/sys", "/run", "/tmp", "/var", "/state", "/efi", "/etc/hostos", "/root" })
        {
            tree.AddDirectory(d, d == "/tmp" ? 0x3FF : d == "/root" ? 0x1C0 : 0x1ED);
        }
        tree.AddContent("/usr/lib/os-release",
            $"NAME=\"HostOS\"\nID=hostos\nVERSION_ID={image.Version}\nPRETTY_NAME=\"HostOS {image.Version}\"\nIMAGE_ID={image.Name}\nIMAGE_VERSION={image.Version}\n");
        tree.AddSymlink("/etc/os-release", "../usr/lib/os-release");
        // Written by the init's DHCP client (src/HostOs.Init/Network/DhcpClient.cs).
        tree.AddSymlink("/etc/resolv.conf", "../run/hostos/resolv.conf");
        tree.AddContent("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
        tree.AddContent("/etc/group", "root:x:0:\ntty:x:5:\nhostos-admin:x:900:\nnogroup:x:65534:\n");
        tree.AddContent("/usr/lib/hostos/init.json", image.ToInitConfig().ToJson() + "\n");
        AddModules(tree, deps, modulesDir, kver, [.. image.Kernel!.Modules, .. image.Kernel.OnDemandModules]);

        AddContents(tree, image.Packages, image.Files, apt, repoRoot);
        new ElfDependencies(libraryTrees).Resolve(tree);
        return tree;
    }

    /// <summary>
    /// The listed files of Debian packages (with busybox applet links) and our own files,
    /// added to <paramref name="tree"/>; shared by the root and the OCI images we build.
    /// </summary>
    internal static void AddContents(FsTree tree, IEnumerable<PackageDefinition> packages, IEnumerable<FileDefinition> files, Apt apt, string repoRoot)
    {
        foreach (PackageDefinition p in packages)
        {
            string pkgTree = apt.Unpack(p.Name);
            foreach (string file in p.Files)
            {
                string rel = file.TrimStart('/');
                if (rel.EndsWith("/*", StringComparison.Ordinal))
                {
                    // Every file of a directory (e.g. the CA certificates), without subdirectories.
                    string dir = Path.Combine(pkgTree, rel[..^2]);
                    if (!Directory.Exists(dir)) throw new FileNotFoundException($"packages.{p.Name}: the package has no directory {file[..^2]}");
                    foreach (string f in Directory.EnumerateFiles(dir).Order(StringComparer.Ordinal))
                    {
                        ElfDependencies.AddWithLinks(tree, pkgTree, Path.GetRelativePath(pkgTree, f));
                    }
                    continue;
                }
                if (!File.Exists(Path.Combine(pkgTree, rel)) && new FileInfo(Path.Combine(pkgTree, rel)).LinkTarget is null)
                {
                    throw new FileNotFoundException($"packages.{p.Name}: the package has no {file}");
                }
                ElfDependencies.AddWithLinks(tree, pkgTree, rel);
            }
            if (p.BusyboxApplets is string appletDir)
            {
                string busybox = Path.Combine(pkgTree, p.Files.Single().TrimStart('/'));
                string target = tree.Map(p.Files.Single());
                foreach (string applet in Tool.Run(busybox, ["--list"]).Split('\n', StringSplitOptions.RemoveEmptyEntries))
                {
                    string link = appletDir.TrimEnd('/') + "/" + applet;
                    if (!tree.Contains(link)) tree.AddSymlink(link, target);
                }
            }
        }
        foreach (FileDefinition f in files)
        {
            int? mode = f.Mode is null ? null : Convert.ToInt32(f.Mode, 8);
            if (f.Directory) tree.AddDirectory(f.Target, mode ?? 0x1ED);
            else if (f.Link is not null) tree.AddSymlink(f.Target, f.Link);
            else if (f.Content is not null) tree.AddContent(f.Target, f.Content, mode ?? 0x1A4);
            else tree.AddFile(f.Target, Path.Combine(repoRoot, f.Source!), mode);
        }
    }

    /// <summary>The named modules and their dependencies, with a modules.dep of just those.</summary>
    private static void AddModules(FsTree tree, ModuleDependencies deps, string modulesDir, string kver, List<string> names)
    {
        string dest = $"/lib/modules/{kver}";
        tree.AddDirectory(dest);
        var lines = new StringBuilder();
        IReadOnlyList<string> order = deps.LoadOrder(names);
        var included = order.ToHashSet(StringComparer.Ordinal);
        string allDeps = File.ReadAllText(Path.Combine(modulesDir, "modules.dep"));
        foreach (string line in allDeps.Split('\n'))
        {
            int colon = line.IndexOf(':');
            if (colon > 0 && included.Contains(line[..colon])) lines.Append(line).Append('\n');
        }
        foreach (string path in order) tree.AddFile($"{dest}/{path}", Path.Combine(modulesDir, path), 0x1A4);
        tree.AddContent($"{dest}/modules.dep", lines.ToString());
    }

    public string Cmdline(string slot) => BootEntryFiles.Options(
        (image.Kernel!.Cmdline ?? "") + (_verity is null ? "" : $" {VerityParameters.CommandLineKey}={_verity.ToCommandLineValue()}"), slot, image.Version!);

    private string BuildEsp(DiskLayout layout, string kver)
    {
        string esp = Path.Combine(outDir, "esp.img");
        File.Delete(esp);
        string volumeId = DerivedGuid("esp").ToString("N")[..8];
        Tool.Run("mkfs.vfat", ["-F", "32", "-n", "HOSTOS-ESP", "-i", volumeId, "-C", esp, ((long)layout.EspMiB * 1024).ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        string boot = Path.Combine(apt.Unpack(SystemdBootPackage), "usr/lib/systemd/boot/efi/systemd-bootx64.efi");
        string v = image.Version!;
        var entry = BootEntryName.New(BootEntryFiles.Prefix + v, BootEntryFiles.Tries);
        string entryFile = Path.Combine(_work, entry.FileName);
        File.WriteAllText(entryFile, BootEntryFiles.Text(v, Cmdline("a")));
        string loaderConf = Path.Combine(_work, "loader.conf");
        File.WriteAllText(loaderConf, "timeout 0\neditor no\nauto-entries no\nauto-firmware no\nconsole-mode keep\n");
        var env = new Dictionary<string, string> { ["MTOOLS_SKIP_CHECK"] = "1", ["SOURCE_DATE_EPOCH"] = "0" };
        Tool.Run("mmd", ["-i", esp, "::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries", "::/hostos", $"::/hostos/{v}"], env: env);
        foreach (var (src, dst) in new[]
        {
            (boot, "::/EFI/BOOT/BOOTX64.EFI"),
            (loaderConf, "::/loader/loader.conf"),
            (entryFile, $"::/loader/entries/{entry.FileName}"),
            (Path.Combine(outDir, "vmlinuz"), $"::/hostos/{v}/vmlinuz"),
            (Path.Combine(outDir, "initrd.img"), $"::/hostos/{v}/initrd.img"),
        })
        {
            Tool.Run("mcopy", ["-i", esp, src, dst], env: env);
        }
        return esp;
    }

    private string BuildState(DiskLayout layout)
    {
        string state = Path.Combine(outDir, "state.img");
        File.Delete(state);
        Tool.Run("mkfs.ext4", ["-q", "-F", "-L", "state", "-U", DerivedGuid("state").ToString(),
            "-E", $"hash_seed={DerivedGuid("state-hash")},lazy_itable_init=1,lazy_journal_init=1",
            state, $"{layout.StateMiB}M"], env: new Dictionary<string, string> { ["E2FSPROGS_FAKE_TIME"] = "1" });
        return state;
    }

    private void BuildDisk(DiskLayout layout, string esp, string root, string state)
    {
        string disk = Path.Combine(outDir, "disk.img");
        File.Delete(disk);
        using (var f = new FileStream(disk, FileMode.CreateNew)) f.SetLength((long)layout.TotalMiB << 20);
        var args = new List<string> { "-U", DerivedGuid("disk").ToString() };
        foreach (DiskLayout.Partition p in layout.Partitions)
        {
            args.AddRange([
                "-n", $"{p.Number}:{(long)p.StartMiB * 2048}:+{p.SizeMiB}M",
                "-t", $"{p.Number}:{p.Type}",
                "-c", $"{p.Number}:{p.Label}",
                "-u", $"{p.Number}:{DerivedGuid("part-" + p.Label)}",
            ]);
        }
        args.Add(disk);
        Tool.Run("sgdisk", args);
        using var d = new FileStream(disk, FileMode.Open, FileAccess.Write);
        foreach (var (image, number) in new[] { (esp, 1), (root, 2), (state, 4) })
        {
            d.Position = (long)layout.Partitions[number - 1].StartMiB << 20;
            using FileStream src = File.OpenRead(image);
            src.CopyTo(d);
        }
    }

    /// <summary>A GUID derived from the image name and version: stable across rebuilds.</summary>
    private Guid DerivedGuid(string purpose)
    {
        byte[] h = SHA256.HashData(Encoding.UTF8.GetBytes($"{image.Name}/{image.Version}/{purpose}"));
        h[6] = (byte)((h[6] & 0x0F) | 0x40); // version 4 layout, variant RFC 4122
        h[8] = (byte)((h[8] & 0x3F) | 0x80);
        return new Guid(h.AsSpan(0, 16));
    }

    private static T Step<T>(string name, Func<T> step)
    {
        var clock = Stopwatch.StartNew();
        T result = step();
        Console.WriteLine($"  {name}: {clock.Elapsed.TotalSeconds:F1} s");
        return result;
    }

    private static void Step(string name, Action step) => Step<int>(name, () => { step(); return 0; });
}

[System.Text.Json.Serialization.JsonSourceGenerationOptions(WriteIndented = true)]
[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, string>))]
internal sealed partial class ManifestJson : System.Text.Json.Serialization.JsonSerializerContext;
