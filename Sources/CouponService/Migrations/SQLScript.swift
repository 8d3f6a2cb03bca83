/// Splits a SQL file into statements, because the extended query protocol runs one statement at a time.
///
/// Semicolons inside quotes, quoted identifiers, dollar-quoted bodies (`$$ ... $$`, `$tag$ ... $tag$`)
/// and comments do not end a statement.
enum SQLScript {
    static func statements(in sql: String) -> [String] {
        let chars = Array(sql.unicodeScalars)
        var statements: [String] = []
        var start = 0
        var i = 0

        func flush(upTo end: Int) {
            let text = String(String.UnicodeScalarView(chars[start..<end]))
            if hasCode(text) { statements.append(text.trimmed) }
        }

        while i < chars.count {
            let c = chars[i]
            let next = i + 1 < chars.count ? chars[i + 1] : nil
            switch c {
            case "'", "\"":
                i = skipQuoted(chars, from: i, quote: c)
            case "-" where next == "-":
                while i < chars.count && chars[i] != "\n" { i += 1 }
            case "/" where next == "*":
                i = skipBlockComment(chars, from: i)
            case "$":
                i = skipDollarQuoted(chars, from: i)
            case ";":
                flush(upTo: i)
                i += 1
                start = i
            default:
                i += 1
            }
        }
        flush(upTo: chars.count)
        return statements
    }

    private static func skipQuoted(_ chars: [Unicode.Scalar], from index: Int, quote: Unicode.Scalar) -> Int {
        var i = index + 1
        while i < chars.count {
            if chars[i] == quote {
                // A doubled quote is an escaped quote.
                if i + 1 < chars.count && chars[i + 1] == quote { i += 2; continue }
                return i + 1
            }
            i += 1
        }
        return i
    }

    private static func skipBlockComment(_ chars: [Unicode.Scalar], from index: Int) -> Int {
        var depth = 0
        var i = index
        while i < chars.count {
            if chars[i] == "/" && i + 1 < chars.count && chars[i + 1] == "*" {
                depth += 1; i += 2
            } else if chars[i] == "*" && i + 1 < chars.count && chars[i + 1] == "/" {
                depth -= 1; i += 2
                if depth == 0 { return i }
            } else {
                i += 1
            }
        }
        return i
    }

    /// `$tag$` opens a body only when the tag is an identifier (so `$1` stays a parameter).
    private static func skipDollarQuoted(_ chars: [Unicode.Scalar], from index: Int) -> Int {
        var end = index + 1
        while end < chars.count && (chars[end].properties.isAlphabetic || chars[end] == "_"
            || (end > index + 1 && chars[end].properties.numericType != nil)) {
            end += 1
        }
        guard end < chars.count, chars[end] == "$" else { return index + 1 }
        let tag = Array(chars[index...end])
        var i = end + 1
        while i + tag.count <= chars.count {
            if chars[i] == "$" && Array(chars[i..<i + tag.count]) == tag { return i + tag.count }
            i += 1
        }
        return chars.count
    }

    /// True when the text holds something other than whitespace and comments.
    private static func hasCode(_ text: String) -> Bool {
        var rest = Substring(text)
        while true {
            rest = rest.drop { $0.isWhitespace }
            if rest.hasPrefix("--") {
                rest = rest.drop { $0 != "\n" }
            } else if rest.hasPrefix("/*") {
                guard let close = rest.range(of: "*/") else { return false }
                rest = rest[close.upperBound...]
            } else {
                return !rest.isEmpty
            }
        }
    }
}
