using System.Text.Json;
using System.Text.Json.Serialization;
using HostOs.Platform.Config;

namespace HostOs.ImageBuilder;

/// <summary>
/// The declarative image (image/*.json, LinuxKit's habit): kernel, command line, Debian
/// packages and the files taken from them, our own files, system services and health
/// checks. Parsed strictly (unknown fields are errors) and validated before anything is
/// built; an image may extend another, appending lists and overriding scalars.
/// </summary>
public sealed class ImageDefinition
{
    public string? Extends { get; init; }
    public string? Name { get; set; }
    public string? Version { get; set; }
    public KernelDefinition? Kernel { get; set; }
    public List<PackageDefinition> Packages { get; set; } = [];
    public List<FileDefinition> Files { get; set; } = [];
    public List<ServiceDefinition> Services { get; set; } = [];
    public HealthConfig? Health { get; set; }
    public DiskDefinition? Disk { get; set; }
    /// <summary>Container images baked into the root, for the system containers.</summary>
    public List<ImageSource> Images { get; set; } = [];
    public SystemContainers Containers { get; set; } = new();

    public static ImageDefinition Load(string path)
    {
        string full = Path.GetFullPath(path);
        ImageDefinition def;
        try
        {
            def = JsonSerializer.Deserialize(File.ReadAllText(full), ImageJson.Default.ImageDefinition)
                  ?? throw new InvalidDataException($"{path}: empty document");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
        if (def.Extends is string parentPath)
        {
            ImageDefinition parent = Load(Path.Combine(Path.GetDirectoryName(full)!, parentPath));
            def = parent.Merge(def);
        }
        return def;
    }

    private ImageDefinition Merge(ImageDefinition child)
    {
        var merged = new ImageDefinition
        {
            Name = child.Name ?? Name,
            Version = child.Version ?? Version,
            Kernel = Kernel,
            Health = child.Health ?? Health,
            Disk = child.Disk ?? Disk,
            Packages = [.. Packages, .. child.Packages],
            Files = [.. Files, .. child.Files],
            Services = [.. Services, .. child.Services],
            Images = [.. Images, .. child.Images],
            Containers = new SystemContainers
            {
                Onboot = [.. Containers.Onboot, .. child.Containers.Onboot],
                Services = [.. Containers.Services, .. child.Containers.Services],
            },
        };
        if (child.Kernel is { } k)
        {
            merged.Kernel = new KernelDefinition
            {
                Package = k.Package ?? Kernel?.Package,
                Cmdline = k.Cmdline ?? Kernel?.Cmdline,
                InitrdModules = [.. Kernel?.InitrdModules ?? [], .. k.InitrdModules],
                Modules = [.. Kernel?.Modules ?? [], .. k.Modules],
                OnDemandModules = [.. Kernel?.OnDemandModules ?? [], .. k.OnDemandModules],
            };
        }
        return merged;
    }

    /// <summary>Every problem at once, each naming the field, so one build run shows them all.</summary>
    public void Validate(string source)
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(Name) || !Name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
            errors.Add("name: letters, digits, '-' or '_' required");
        if (Version is null || !System.Text.RegularExpressions.Regex.IsMatch(Version, @"^[0-9]+(\.[0-9]+){0,3}$"))
            errors.Add($"version: '{Version}' is not a dotted number like 1.2.3");
        if (Kernel is null) errors.Add("kernel: missing");
        else
        {
            if (string.IsNullOrWhiteSpace(Kernel.Package)) errors.Add("kernel.package: missing");
            if (Kernel.Cmdline is null) errors.Add("kernel.cmdline: missing");
            else if (Kernel.Cmdline.Contains("hostos.slot") || Kernel.Cmdline.Contains("hostos.version"))
                errors.Add("kernel.cmdline: hostos.slot and hostos.version are set by the builder");
            if (Kernel.InitrdModules.Count == 0) errors.Add("kernel.initrdModules: the initramfs needs at least the disk and root fs drivers");
        }
        var names = new HashSet<string>();
        foreach (PackageDefinition p in Packages)
        {
            if (!System.Text.RegularExpressions.Regex.IsMatch(p.Name, "^[a-z0-9][a-z0-9+.-]+$")) errors.Add($"packages: '{p.Name}' is not a Debian package name");
            if (!names.Add(p.Name)) errors.Add($"packages: '{p.Name}' listed twice");
            foreach (string f in p.Files) if (!f.StartsWith('/')) errors.Add($"packages.{p.Name}.files: '{f}' must be absolute");
            if (p.BusyboxApplets is string dir && !dir.StartsWith('/')) errors.Add($"packages.{p.Name}.busyboxApplets: '{dir}' must be absolute");
        }
        foreach (FileDefinition f in Files)
        {
            if (!f.Target.StartsWith('/')) errors.Add($"files: target '{f.Target}' must be absolute");
            int kinds = (f.Source is null ? 0 : 1) + (f.Link is null ? 0 : 1) + (f.Content is null ? 0 : 1) + (f.Directory ? 1 : 0);
            if (kinds != 1) errors.Add($"files: '{f.Target}' needs exactly one of source, link, content, directory");
            if (f.Mode is string m && !System.Text.RegularExpressions.Regex.IsMatch(m, "^0?[0-7]{3,4}$")) errors.Add($"files: '{f.Target}' mode '{m}' is not octal");
        }
        var imageNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (ImageSource i in Images)
        {
            if (!System.Text.RegularExpressions.Regex.IsMatch(i.Name, "^[a-z0-9][a-z0-9_.-]*$")) errors.Add($"images: '{i.Name}' must be lower-case letters, digits, '_', '.' or '-'");
            if (!imageNames.Add(i.Name)) errors.Add($"images: '{i.Name}' listed twice");
            if ((i.Build is null) == (i.Layout is null)) errors.Add($"images.{i.Name}: needs exactly one of build (an image/containers/*.json) or layout (an OCI layout directory)");
        }
        if (Disk is null) errors.Add("disk: missing");
        else
        {
            if (Disk.EspMiB < 40) errors.Add("disk.espMiB: FAT32 needs at least 40 MiB");
            if (Disk.SlotMiB < 32) errors.Add("disk.slotMiB: at least 32");
            if (Disk.StateMiB < 64) errors.Add("disk.stateMiB: at least 64");
        }
        try
        {
            ToInitConfig().Validate(source);
        }
        catch (InvalidDataException e)
        {
            errors.AddRange(e.Message.Split('\n'));
        }
        if (errors.Count > 0)
        {
            throw new InvalidDataException($"{source} is invalid:\n  - " + string.Join("\n  - ", errors));
        }
    }

    public InitConfig ToInitConfig() => new()
    {
        Modules = Kernel?.Modules ?? [],
        Services = Services,
        Health = Health ?? new HealthConfig(),
        Images = [.. Images.Select(i => i.Name)],
        Containers = Containers,
    };
}

public sealed class KernelDefinition
{
    /// <summary>The Debian package, usually a metapackage such as linux-image-cloud-amd64.</summary>
    public string? Package { get; init; }
    public string? Cmdline { get; init; }
    /// <summary>Modules (with their dependencies) in the initramfs, all loaded by phase 1.</summary>
    public List<string> InitrdModules { get; set; } = [];
    /// <summary>Modules (with dependencies) in the root, loaded by phase 2.</summary>
    public List<string> Modules { get; set; } = [];
    /// <summary>
    /// Modules (with dependencies) in the root that the boot does not load: the init loads
    /// them when a feature first needs them (the container bridge's), so a machine that
    /// never uses it does not wait for them.
    /// </summary>
    public List<string> OnDemandModules { get; set; } = [];
}

public sealed class PackageDefinition
{
    public required string Name { get; init; }
    /// <summary>Files to install from the package (paths as the package has them; DIR/* for
    /// every file of a directory). Empty: the package only provides shared libraries that
    /// installed ELF files need.</summary>
    public List<string> Files { get; set; } = [];
    /// <summary>For busybox: make a symlink per applet in this directory.</summary>
    public string? BusyboxApplets { get; init; }
}

public sealed class FileDefinition
{
    public required string Target { get; init; }
    /// <summary>A file of the repository or of the build output, relative to the repository.</summary>
    public string? Source { get; init; }
    public string? Link { get; init; }
    public string? Content { get; init; }
    public bool Directory { get; init; }
    public string? Mode { get; init; }
}

/// <summary>A container image to bake: built from a definition, or taken from an OCI layout.</summary>
public sealed class ImageSource
{
    public required string Name { get; init; }
    /// <summary>An OCI image definition (image/containers/*.json), relative to the repository.</summary>
    public string? Build { get; init; }
    /// <summary>An OCI image layout directory, relative to the repository.</summary>
    public string? Layout { get; init; }
}

public sealed class DiskDefinition
{
    public int EspMiB { get; set; } = 64;
    public int SlotMiB { get; set; } = 256;
    public int StateMiB { get; set; } = 256;
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    UseStringEnumConverter = true,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = false)]
[JsonSerializable(typeof(ImageDefinition))]
internal sealed partial class ImageJson : JsonSerializerContext;
