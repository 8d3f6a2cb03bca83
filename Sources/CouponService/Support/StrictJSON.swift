/// JSON as this service reads it, checked before any decoder (RFC 8259, strictly): UTF-8 without a
/// byte order mark; one value, nothing after it but whitespace; no trailing comma, comment or bare
/// word; no object that names a key twice. A decoder and a gateway in front of the service may read
/// anything else differently (another encoding, the last of two values where Foundation keeps the
/// first), so what a check upstream passes is what this service acts on.
enum StrictJSON {
    enum Refusal: Error, Equatable, CustomStringConvertible {
        /// Not UTF-8: the encoding the bytes look like, or where UTF-8 breaks.
        case encoding(String)
        /// Not RFC 8259 JSON: what was expected at a byte offset.
        case syntax(expected: String, offset: Int)
        /// An object names this key twice.
        case repeatedKey(String)

        var description: String {
            switch self {
            case .encoding(let what): "it is \(what)"
            case .syntax(let expected, let offset): "\(expected) at byte \(offset)"
            case .repeatedKey(let key): "'\(key)' appears twice"
            }
        }
    }

    /// Deeper nesting is refused (the bodies this service reads are two levels deep).
    static let maximumDepth = 32

    /// A JSON value as this reading gives it: numbers as `Double`, objects with their keys unique.
    enum Value: Equatable, Sendable {
        case string(String), number(Double), bool(Bool), null
        case array([Value]), object([String: Value])
    }

    static func check(_ bytes: some Collection<UInt8>) throws(Refusal) {
        _ = try parse(bytes)
    }

    /// The value of a JSON text that passes the check: one reading, for a check and a decoder that
    /// must not disagree (a token's header and claims are read from it, no second parser).
    static func parse(_ bytes: some Collection<UInt8>) throws(Refusal) -> Value {
        let bytes = Array(bytes)
        if let encoding = otherEncoding(of: bytes) { throw .encoding(encoding) }
        var reader = Reader(bytes: bytes)
        reader.skipWhitespace()
        let value = try reader.value(depth: 0)
        reader.skipWhitespace()
        guard reader.index == bytes.count else { throw .syntax(expected: "the end of the JSON text", offset: reader.index) }
        return value
    }

    /// The encoding a JSON text in other than plain UTF-8 looks like (RFC 8259 section 8.1: exchanged
    /// JSON is UTF-8 without a byte order mark; a JSON text starts with an ASCII character, so the
    /// zero bytes around it tell UTF-16 and UTF-32 apart); nil for valid UTF-8.
    static func otherEncoding(of bytes: [UInt8]) -> String? {
        func starts(_ prefix: [UInt8]) -> Bool { bytes.starts(with: prefix) }
        if starts([0xEF, 0xBB, 0xBF]) { return "UTF-8 with a byte order mark" }
        if starts([0x00, 0x00, 0xFE, 0xFF]) || starts([0xFF, 0xFE, 0x00, 0x00]) { return "UTF-32 with a byte order mark" }
        if starts([0xFE, 0xFF]) || starts([0xFF, 0xFE]) { return "UTF-16 with a byte order mark" }
        if bytes.count >= 4, bytes[0] == 0 && bytes[1] == 0 || bytes[1] == 0 && bytes[2] == 0 && bytes[3] == 0 { return "UTF-32" }
        if bytes.count >= 2, bytes[0] == 0 || bytes[1] == 0 { return "UTF-16" }
        var decoder = UTF8()
        var iterator = bytes.makeIterator()
        var offset = 0
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): offset += UTF8.width(scalar)
            case .emptyInput: return nil
            case .error: return "invalid UTF-8 at byte \(offset)"
            }
        }
    }

    private struct Reader {
        let bytes: [UInt8]
        var index = 0

        var next: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipWhitespace() {
            while let byte = next, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
        }

        mutating func expect(_ byte: UInt8, _ what: String) throws(Refusal) {
            guard next == byte else { throw .syntax(expected: what, offset: index) }
            index += 1
        }

        mutating func value(depth: Int) throws(Refusal) -> Value {
            guard depth < StrictJSON.maximumDepth else { throw .syntax(expected: "at most \(StrictJSON.maximumDepth) levels of nesting", offset: index) }
            guard let byte = next else { throw .syntax(expected: "a JSON value", offset: index) }
            switch byte {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal(Self.trueBytes); return .bool(true)
            case UInt8(ascii: "f"): try literal(Self.falseBytes); return .bool(false)
            case UInt8(ascii: "n"): try literal(Self.nullBytes); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: throw .syntax(expected: "a JSON value", offset: index)
            }
        }

        mutating func object(depth: Int) throws(Refusal) -> Value {
            index += 1
            skipWhitespace()
            var members: [String: Value] = [:]
            if next == UInt8(ascii: "}") { index += 1; return .object(members) }
            while true {
                guard next == UInt8(ascii: "\"") else { throw .syntax(expected: "a key in double quotes", offset: index) }
                let key = try string()
                guard members[key] == nil else { throw .repeatedKey(key) }
                skipWhitespace()
                try expect(UInt8(ascii: ":"), "':' after a key")
                skipWhitespace()
                members[key] = try value(depth: depth + 1)
                skipWhitespace()
                if next == UInt8(ascii: "}") { index += 1; return .object(members) }
                try expect(UInt8(ascii: ","), "',' or '}'")
                skipWhitespace()
            }
        }

        mutating func array(depth: Int) throws(Refusal) -> Value {
            index += 1
            skipWhitespace()
            var elements: [Value] = []
            if next == UInt8(ascii: "]") { index += 1; return .array(elements) }
            while true {
                elements.append(try value(depth: depth + 1))
                skipWhitespace()
                if next == UInt8(ascii: "]") { index += 1; return .array(elements) }
                try expect(UInt8(ascii: ","), "',' or ']'")
                skipWhitespace()
            }
        }

        static let trueBytes = Array("true".utf8), falseBytes = Array("false".utf8), nullBytes = Array("null".utf8)

        mutating func literal(_ word: [UInt8]) throws(Refusal) {
            guard bytes[index...].starts(with: word) else { throw .syntax(expected: "a JSON value", offset: index) }
            index += word.count
        }

        mutating func digits() -> Int {
            let start = index
            while let byte = next, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { index += 1 }
            return index - start
        }

        /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
        mutating func number() throws(Refusal) -> Value {
            let start = index
            if next == UInt8(ascii: "-") { index += 1 }
            if next == UInt8(ascii: "0") {
                index += 1
            } else if digits() == 0 {
                throw .syntax(expected: "a digit", offset: index)
            }
            if next == UInt8(ascii: ".") {
                index += 1
                guard digits() > 0 else { throw .syntax(expected: "a digit after '.'", offset: index) }
            }
            if next == UInt8(ascii: "e") || next == UInt8(ascii: "E") {
                index += 1
                if next == UInt8(ascii: "+") || next == UInt8(ascii: "-") { index += 1 }
                guard digits() > 0 else { throw .syntax(expected: "a digit of the exponent", offset: index) }
            }
            if let byte = next, byte == UInt8(ascii: ".") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
                throw .syntax(expected: "a number without a leading zero", offset: start)
            }
            // The grammar above is Swift's too; past Double's range it is infinite, which no check passes.
            return .number(Double(String(decoding: bytes[start..<index], as: UTF8.self)) ?? .infinity)
        }

        /// A string's text, escapes resolved (the keys are compared as text: `"a"` and `"\u0061"` are one key).
        mutating func string() throws(Refusal) -> String {
            index += 1
            var text = ""
            var plainStart = index
            while true {
                guard let byte = next else { throw .syntax(expected: "the closing '\"' of a string", offset: index) }
                switch byte {
                case UInt8(ascii: "\""):
                    text += String(decoding: bytes[plainStart..<index], as: UTF8.self)
                    index += 1
                    return text
                case UInt8(ascii: "\\"):
                    text += String(decoding: bytes[plainStart..<index], as: UTF8.self)
                    index += 1
                    text.unicodeScalars.append(try escaped())
                    plainStart = index
                case 0x00..<0x20:
                    throw .syntax(expected: "a control character escaped", offset: index)
                default:
                    index += 1
                }
            }
        }

        mutating func escaped() throws(Refusal) -> Unicode.Scalar {
            guard let byte = next else { throw .syntax(expected: "an escape", offset: index) }
            index += 1
            switch byte {
            case UInt8(ascii: "\""): return "\""
            case UInt8(ascii: "\\"): return "\\"
            case UInt8(ascii: "/"): return "/"
            case UInt8(ascii: "b"): return "\u{08}"
            case UInt8(ascii: "f"): return "\u{0C}"
            case UInt8(ascii: "n"): return "\n"
            case UInt8(ascii: "r"): return "\r"
            case UInt8(ascii: "t"): return "\t"
            case UInt8(ascii: "u"):
                let unit = try hex4()
                switch unit {
                case 0xD800..<0xDC00:
                    guard next == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u") else {
                        throw .syntax(expected: "the low half of an escaped surrogate pair", offset: index)
                    }
                    index += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else {
                        throw .syntax(expected: "the low half of an escaped surrogate pair", offset: index - 6)
                    }
                    return Unicode.Scalar(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))!
                case 0xDC00..<0xE000:
                    throw .syntax(expected: "an escaped surrogate's high half first", offset: index - 6)
                default:
                    return Unicode.Scalar(unit)!
                }
            default:
                throw .syntax(expected: "one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX", offset: index - 2)
            }
        }

        mutating func hex4() throws(Refusal) -> UInt32 {
            var value: UInt32 = 0
            for _ in 0..<4 {
                guard let byte = next, let digit = Self.hexValue(byte) else { throw .syntax(expected: "four hex digits after \\u", offset: index) }
                value = value << 4 | digit
                index += 1
            }
            return value
        }

        static func hexValue(_ byte: UInt8) -> UInt32? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
            default: nil
            }
        }
    }
}
