//! `Format=XML` rendering: a JSON answer becomes nested elements the way ECS writes them
//! (`{"Instances":{"Instance":[a,b]}}` → `<Instances><Instance>a</Instance><Instance>b</Instance></Instances>`).

use std::fmt::Write as _;

use serde_json::Value;

/// `<?xml …?><root>…</root>` for a JSON value.
#[must_use]
pub fn to_xml(root: &str, value: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    element(&mut out, root, value);
    out
}

fn element(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Array(items) => {
            for item in items {
                element(out, name, item);
            }
        }
        Value::Object(map) => {
            let _ = write!(out, "<{name}>");
            for (k, v) in map {
                element(out, k, v);
            }
            let _ = write!(out, "</{name}>");
        }
        Value::Null => {
            let _ = write!(out, "<{name}/>");
        }
        Value::String(s) => {
            let _ = write!(out, "<{name}>{}</{name}>", escape(s));
        }
        other => {
            let _ = write!(out, "<{name}>{other}</{name}>");
        }
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::to_xml;

    #[test]
    fn renders_nested_lists_as_repeated_elements() {
        let v = json!({"RequestId": "R", "Instances": {"Instance": [{"InstanceId": "i-a"}, {"InstanceId": "i-b"}]}, "TotalCount": 2});
        assert_eq!(
            to_xml("DescribeInstancesResponse", &v),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeInstancesResponse><Instances><Instance><InstanceId>i-a</InstanceId></Instance><Instance><InstanceId>i-b</InstanceId></Instance></Instances><RequestId>R</RequestId><TotalCount>2</TotalCount></DescribeInstancesResponse>"
        );
    }

    #[test]
    fn escapes_text() {
        let v = json!({"Message": "a<b & \"c\""});
        assert!(to_xml("Error", &v).contains("<Message>a&lt;b &amp; &quot;c&quot;</Message>"));
    }
}
