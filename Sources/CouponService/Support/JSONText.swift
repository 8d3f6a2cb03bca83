import Foundation
import NIOCore

// JSON text as the API carries it: strings escaped as JSONEncoder escapes them, instants in RFC 3339.

/// `2026-11-24T19:35:10.349Z`: UTC, milliseconds. Written by hand because it is on every answer,
/// and `ISO8601FormatStyle` costs more than the rest of the answer's encoding.
enum RFC3339 {
    /// The instants RFC 3339 can write in UTC: four-digit years, 0001-01-01T00:00:00Z up to (not
    /// including) 10000-01-01T00:00:00Z, in seconds since 1970. The reader refuses anything outside.
    static let instants = -62_135_596_800.0..<253_402_300_800.0

    static func string(_ date: Date) -> String {
        var buffer = ByteBuffer()
        write(date, to: &buffer)
        return String(buffer: buffer)
    }

    /// Any `Date` at all: one the reader could not have made (a year past 9999 or before 1, from the
    /// database's `infinity` say, or NaN) is written as the nearest instant it can make, so the text
    /// always reads back and no answer traps.
    static func write(_ date: Date, to buffer: inout ByteBuffer) {
        let interval = date.timeIntervalSince1970
        let clamped = interval.isNaN ? 0 : min(max(interval, instants.lowerBound), instants.upperBound - 0.001)
        let milliseconds = Int64((clamped * 1000).rounded(.down))
        var seconds = time_t(milliseconds.quotientFloorDiv(1000))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let year = parts.tm_year + 1900
        // "YYYY-MM-DDTHH:MM:SS.mmmZ": the separators written at once, the digits set in place.
        let start = buffer.writerIndex
        buffer.writeStaticString("0000-00-00T00:00:00.000Z")
        func put(_ value: Int32, at end: Int, width: Int) {
            var value = value
            for index in stride(from: end, to: end - width, by: -1) {
                buffer.setInteger(UInt8(ascii: "0") + UInt8(value % 10), at: start + index)
                value /= 10
            }
        }
        put(year, at: 3, width: 4)
        put(parts.tm_mon + 1, at: 6, width: 2)
        put(parts.tm_mday, at: 9, width: 2)
        put(parts.tm_hour, at: 12, width: 2)
        put(parts.tm_min, at: 15, width: 2)
        put(parts.tm_sec, at: 18, width: 2)
        put(Int32(milliseconds - Int64(seconds) * 1000), at: 22, width: 3)
    }
}

extension RFC3339 {
    /// Reads RFC 3339 section 5.6 as written: `T` or `t`, `Z`, `z` or any offset up to ±23:59, any
    /// number of fractional digits, and a leap second (:60, read as the next second). Foundation's
    /// ISO 8601 parser turns down offsets beyond ±18:00, which the RFC allows. An instant outside
    /// `instants` once in UTC (`0001-01-01T00:00:00+00:01` is in year 0) is refused.
    static func date(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        var at = 0
        func number(_ width: Int) -> Int? {
            guard at + width <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[at..<at + width] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            at += width
            return value
        }
        func expect(_ characters: String) -> Bool {
            guard at < bytes.count, characters.utf8.contains(bytes[at]) else { return false }
            at += 1
            return true
        }
        guard let year = number(4), expect("-"), let month = number(2), expect("-"), let day = number(2), expect("Tt"),
            let hour = number(2), expect(":"), let minute = number(2), expect(":"), let second = number(2),
            (1...12).contains(month), (0...23).contains(hour), (0...59).contains(minute), (0...60).contains(second)
        else { return nil }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard (1...monthDays[month - 1]).contains(day) else { return nil }
        var fraction = 0.0
        if expect(".") {
            var scale = 0.1
            let start = at
            while at < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[at]) {
                fraction += Double(bytes[at] - UInt8(ascii: "0")) * scale
                scale /= 10
                at += 1
            }
            guard at > start else { return nil }
        }
        var offset = 0
        if !expect("Zz") {
            guard at < bytes.count else { return nil }
            let sign = bytes[at] == UInt8(ascii: "-") ? -1 : 1
            guard expect("+-"), let offsetHour = number(2), expect(":"), let offsetMinute = number(2),
                (0...23).contains(offsetHour), (0...59).contains(offsetMinute)
            else { return nil }
            offset = sign * (offsetHour * 3600 + offsetMinute * 60)
        }
        guard at == bytes.count else { return nil }
        // Days from 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's days_from_civil).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
        let instant = Double(seconds) + fraction
        guard instants.contains(instant) else { return nil }
        return Date(timeIntervalSince1970: instant)
    }
}

extension Int64 {
    /// Division rounding toward negative infinity, so dates before 1970 format correctly too.
    func quotientFloorDiv(_ divisor: Int64) -> Int64 {
        let (quotient, remainder) = quotientAndRemainder(dividingBy: divisor)
        return remainder < 0 ? quotient - 1 : quotient
    }
}

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
