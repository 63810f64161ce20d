using System.Text;
using System.Text.Json;
using HostOs.Platform;

namespace HostOs.UnitTests.Platform;

public class JsonOutputTests
{
    private static string Write(bool indented, Action<JsonOutput> write)
    {
        var w = new JsonOutput(indented);
        write(w);
        return w.ToString();
    }

    private static string Reference(bool indented, Action<Utf8JsonWriter> write)
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = indented })) write(w);
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Layout_IsUtf8JsonWritersByteForByte(bool indented)
    {
        string ours = Write(indented, w =>
        {
            w.StartArray();
            w.StartObject();
            w.String("id", "c1");
            w.Number("pid", 42);
            w.Number("negative", -7);
            w.Number("min", long.MinValue);
            w.Number("big", ulong.MaxValue);
            w.StartObject("annotations");
            w.String("a", "b");
            w.EndObject();
            w.StartObject("empty");
            w.EndObject();
            w.StartArray("none");
            w.EndArray();
            w.EndObject();
            w.StartObject();
            w.EndObject();
            w.EndArray();
        });
        string reference = Reference(indented, w =>
        {
            w.WriteStartArray();
            w.WriteStartObject();
            w.WriteString("id", "c1");
            w.WriteNumber("pid", 42);
            w.WriteNumber("negative", -7);
            w.WriteNumber("min", long.MinValue);
            w.WriteNumber("big", ulong.MaxValue);
            w.WriteStartObject("annotations");
            w.WriteString("a", "b");
            w.WriteEndObject();
            w.WriteStartObject("empty");
            w.WriteEndObject();
            w.WriteStartArray("none");
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteStartObject();
            w.WriteEndObject();
            w.WriteEndArray();
        });
        Assert.Equal(reference, ours);
    }

    [Fact]
    public void Strings_AreEscapedAsJsonRequiresAndReadBackUnchanged()
    {
        string[] values = ["quote \" backslash \\ slash /", "\n\r\t\b\f \u0000 \u001f \u007f", "é ü 日本 😀 <script>&'+`", "\u2028\u2029", ""];
        foreach (string value in values)
        {
            string json = Write(indented: false, w =>
            {
                w.StartObject();
                w.String(value, value);
                w.EndObject();
            });
            using JsonDocument doc = JsonDocument.Parse(Encoding.UTF8.GetBytes(json));
            JsonProperty p = Assert.Single(doc.RootElement.EnumerateObject());
            Assert.Equal(value, p.Name);
            Assert.Equal(value, p.Value.GetString());
        }
        Assert.Equal("""{"a":"\u0001\"\\\n"}""", Write(false, w => { w.StartObject(); w.String("a", "\u0001\"\\\n"); w.EndObject(); }));
        // Non-ASCII is written as UTF-8, not as \u escapes.
        Assert.Equal("{\"a\":\"é\"}"u8.ToArray(), new Func<byte[]>(() => { var w = new JsonOutput(false); w.StartObject(); w.String("a", "é"); w.EndObject(); return w.ToUtf8(); })());
    }

    [Fact]
    public void Quote_IsAJsonStringOnItsOwn()
    {
        Assert.Equal("\"a\\\"b\\n\\u0007 é\"", JsonOutput.Quote("a\"b\n\u0007 é"));
        Assert.Equal("x", JsonDocument.Parse(JsonOutput.Quote("x")).RootElement.GetString());
    }

    [Fact]
    public void Misuse_IsRefusedByName()
    {
        var open = new JsonOutput(false);
        open.StartObject();
        Assert.Contains("still open", Assert.Throws<InvalidOperationException>(() => open.ToString()).Message);
        Assert.Contains("without an open", Assert.Throws<InvalidOperationException>(() => new JsonOutput(false).EndObject()).Message);
        Assert.Contains("'x' outside an object", Assert.Throws<InvalidOperationException>(() => new JsonOutput(false).String("x", "y")).Message);
        var done = new JsonOutput(false);
        done.StartObject();
        done.EndObject();
        Assert.Contains("second value", Assert.Throws<InvalidOperationException>(() => done.StartObject()).Message);
    }
}
