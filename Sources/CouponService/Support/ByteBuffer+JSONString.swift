import NIOCore

extension ByteBuffer {
    /// A JSON string literal (RFC 8259), escaped as `JSONEncoder` escapes it: quotes, backslashes and
    /// control characters; the rest as UTF-8. The one JSON string writer: answers and log lines.
    mutating func writeJSONString(_ text: String) {
        writeInteger(UInt8(ascii: "\""))
        defer { writeInteger(UInt8(ascii: "\"")) }
        // Ids and codes never need escaping: one copy.
        guard text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else {
            writeString(text)
            return
        }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                writeInteger(UInt8(ascii: "\\"))
                writeInteger(byte)
            case UInt8(ascii: "\n"): writeStaticString("\\n")
            case UInt8(ascii: "\r"): writeStaticString("\\r")
            case UInt8(ascii: "\t"): writeStaticString("\\t")
            case 0x08: writeStaticString("\\b")
            case 0x0C: writeStaticString("\\f")
            case 0..<0x20:
                writeStaticString("\\u00")
                writeInteger(Self.hexDigits[Int(byte >> 4)])
                writeInteger(Self.hexDigits[Int(byte & 0xF)])
            default:
                writeInteger(byte)
            }
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)
}
