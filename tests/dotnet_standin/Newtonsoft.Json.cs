// A stand-in for the two members of Newtonsoft.Json the Windows media engine touches: MediaPlatform.CreateMediaConfiguration
// returns a Newtonsoft.Json.Linq.JObject, which the engine turns into the answer's blob with
// JToken.ToString(Formatting.None). Compiled by tests/test_windows_engine.py with Mono's mcs into Newtonsoft.Json.dll.
// Not Newtonsoft's code: just these names and signatures (https://www.newtonsoft.com/json/help/html/M_Newtonsoft_Json_Linq_JToken_ToString_1.htm).

namespace Newtonsoft.Json
{
    public enum Formatting
    {
        None = 0,
        Indented = 1,
    }

    public abstract class JsonConverter
    {
    }
}

namespace Newtonsoft.Json.Linq
{
    using Newtonsoft.Json;

    public class JObject
    {
        private readonly string compact;
        private readonly string indented;

        private JObject(string compact, string indented)
        {
            this.compact = compact;
            this.indented = indented;
        }

        // The stand-in keeps the text it is given (compact JSON); the real JObject parses it into a tree.
        public static JObject Parse(string json)
        {
            return new JObject(json, json.Replace(",", ",\n  "));
        }

        public override string ToString()
        {
            return this.indented;
        }

        public string ToString(Formatting formatting, params JsonConverter[] converters)
        {
            return formatting == Formatting.None ? this.compact : this.indented;
        }
    }
}
