using HostOs.ImageBuilder;

// hostos-imagebuilder build IMAGE.json --out DIR [--lock FILE] [--cache DIR] [--repo DIR]
//   Builds the disk image an image definition describes. Runs on the build host.
// hostos-imagebuilder validate IMAGE.json
if (args.Length < 2 || args[0] is not ("build" or "validate"))
{
    Console.Error.WriteLine("usage: hostos-imagebuilder build IMAGE.json --out DIR [--lock FILE] [--cache DIR] [--repo DIR]\n" +
                            "       hostos-imagebuilder validate IMAGE.json");
    return 2;
}
string Option(string name, string fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
}
try
{
    string definition = args[1];
    ImageDefinition image = ImageDefinition.Load(definition);
    image.Validate(definition);
    if (args[0] == "validate")
    {
        Console.WriteLine($"{definition}: valid ({image.Name} {image.Version})");
        return 0;
    }
    // Sources in the definition ("out/publish/...") are relative to the repository.
    string repo = Path.GetFullPath(Option("--repo", Directory.GetCurrentDirectory()));
    string outDir = Path.GetFullPath(Option("--out", Path.Combine("out", image.Name!)));
    Directory.CreateDirectory(outDir);
    var lockFile = new PackageLock(Path.GetFullPath(Option("--lock", "image/packages.lock")));
    var apt = new Apt(Path.GetFullPath(Option("--cache", ".cache/apt")), lockFile);
    Console.WriteLine($"building {image.Name} {image.Version} into {outDir}");
    new Builder(image, repo, outDir, apt).Build();
    if (lockFile.Changes.Count > 0)
    {
        Console.Error.WriteLine("!!! INPUTS CHANGED since image/packages.lock (now updated; commit it):");
        foreach (string c in lockFile.Changes) Console.Error.WriteLine($"!!!   {c}");
        lockFile.Save();
    }
    Console.WriteLine($"done: {Path.Combine(outDir, "disk.img")}");
    return 0;
}
catch (Exception e) when (e is InvalidDataException or FileNotFoundException or InvalidOperationException or IOException or KeyNotFoundException)
{
    Console.Error.WriteLine($"hostos-imagebuilder: {e.Message}");
    return 1;
}
