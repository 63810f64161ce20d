namespace HostOs.Containers.Spec;

/// <summary>A config.json that cannot be run, with every problem at its JSON path.</summary>
public sealed class SpecException(string source, IReadOnlyList<string> problems)
    : Exception($"{source}: {problems.Count} problem(s):\n  - {string.Join("\n  - ", problems)}")
{
    public IReadOnlyList<string> Problems { get; } = problems;
}
