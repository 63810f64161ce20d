using System.Text;

namespace HostOs.Platform;

/// <summary>
/// A writer for the small JSON documents on a container's start path: the runtime's state
/// file and the OCI state (runc's <c>state</c>, the hooks' stdin). Utf8JsonWriter escapes
/// through System.Text.Encodings.Web's default encoder, and that encoder's first use builds
/// its tables (allowed-character bitmaps, SearchValues, a probabilistic map): ~3k distinct
/// instructions in every short-lived process, which is what costs under TCG
/// (docs/containers.md "Counting instead of timing"). This writes what JSON requires and no
/// more: quote, backslash and control characters escaped, everything else as UTF-8.
/// The layout, indented or not, is Utf8JsonWriter's (two spaces, <c>"name": value</c>),
/// so the output is byte for byte the same wherever neither needs to escape.
/// </summary>
public sealed class JsonOutput(bool indented)
{
    private readonly StringBuilder _text = new();
    private readonly List<bool> _hasItems = [];

    public void StartObject(string? name = null) => Open(name, '{');
    public void EndObject() => Close('}');
    public void StartArray(string? name = null) => Open(name, '[');
    public void EndArray() => Close(']');

    public void String(string name, string value)
    {
        Name(name);
        AppendQuoted(_text, value);
    }

    /// <summary>VALUE as a JSON string, quotes included (runc's text log form quotes its message so).</summary>
    public static string Quote(string value) => AppendQuoted(new StringBuilder(value.Length + 2), value).ToString();

    public void Number(string name, long value)
    {
        Name(name);
        // Formatted as unsigned: a negative value with the default format reads the current
        // culture's negative sign, which builds the culture's data first.
        if (value < 0) _text.Append('-').Append(unchecked((ulong)-(value + 1)) + 1);
        else _text.Append((ulong)value);
    }

    public void Number(string name, ulong value)
    {
        Name(name);
        _text.Append(value);
    }

    public override string ToString()
    {
        if (_hasItems.Count != 0) throw new InvalidOperationException("JSON output: an object or array is still open");
        return _text.ToString();
    }

    public byte[] ToUtf8() => Encoding.UTF8.GetBytes(ToString());

    private void Open(string? name, char bracket)
    {
        if (name is null) Item();
        else Name(name);
        _text.Append(bracket);
        _hasItems.Add(false);
    }

    private void Close(char bracket)
    {
        if (_hasItems.Count == 0) throw new InvalidOperationException($"JSON output: '{bracket}' without an open object or array");
        bool hadItems = _hasItems[^1];
        _hasItems.RemoveAt(_hasItems.Count - 1);
        if (hadItems) NewLine();
        _text.Append(bracket);
    }

    /// <summary>The separator and indentation before a value (an array's element or the document).</summary>
    private void Item()
    {
        if (_hasItems.Count == 0)
        {
            if (_text.Length != 0) throw new InvalidOperationException("JSON output: a second value at the top level");
            return;
        }
        if (_hasItems[^1]) _text.Append(',');
        _hasItems[^1] = true;
        NewLine();
    }

    private void Name(string name)
    {
        if (_hasItems.Count == 0) throw new InvalidOperationException($"JSON output: property '{name}' outside an object");
        Item();
        AppendQuoted(_text, name);
        _text.Append(indented ? ": " : ":");
    }

    private void NewLine()
    {
        if (!indented) return;
        _text.Append('\n').Append(' ', 2 * _hasItems.Count);
    }

    private static StringBuilder AppendQuoted(StringBuilder text, string value)
    {
        text.Append('"');
        foreach (char c in value)
        {
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                case < ' ':
                    const string hex = "0123456789abcdef";
                    text.Append("\\u00").Append(hex[c >> 4]).Append(hex[c & 0xf]);
                    break;
                default: text.Append(c); break;
            }
        }
        return text.Append('"');
    }
}
