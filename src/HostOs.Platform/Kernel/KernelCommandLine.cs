namespace HostOs.Platform.Kernel;

/// <summary>
/// The kernel command line (/proc/cmdline) as the kernel splits it: words separated by
/// spaces, double quotes group a value with spaces (<c>a="b c"</c>), a word without
/// <c>=</c> is a flag. When a key repeats, the last one wins, as for the kernel's own
/// parameters (Documentation/admin-guide/kernel-parameters.rst).
/// </summary>
public sealed class KernelCommandLine
{
    private readonly Dictionary<string, string?> _values;

    private KernelCommandLine(Dictionary<string, string?> values) => _values = values;

    public static KernelCommandLine Parse(ReadOnlySpan<char> text)
    {
        var values = new Dictionary<string, string?>(StringComparer.Ordinal);
        int i = 0;
        while (i < text.Length)
        {
            while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
            if (i >= text.Length) break;
            var word = new System.Text.StringBuilder();
            bool quoted = false;
            while (i < text.Length && (quoted || !char.IsWhiteSpace(text[i])))
            {
                if (text[i] == '"') quoted = !quoted;
                else word.Append(text[i]);
                i++;
            }
            string w = word.ToString();
            int eq = w.IndexOf('=');
            if (eq < 0) values[w] = null;
            else values[w[..eq]] = w[(eq + 1)..];
        }
        return new KernelCommandLine(values);
    }

    public bool Has(string key) => _values.ContainsKey(key);

    public string? Get(string key) => _values.TryGetValue(key, out string? v) ? v : null;

    public string Require(string key) =>
        Get(key) ?? throw new InvalidDataException($"kernel command line: '{key}=' is missing");
}
