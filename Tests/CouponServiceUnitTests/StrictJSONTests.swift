@testable import CouponService
import CouponTestSupport
import Foundation
import Testing

/// One reading of bytes: what the check passes is RFC 8259 JSON in UTF-8, which every decoder reads alike.
@Suite struct StrictJSONTests {
    @Test(arguments: [
        #"{}"#, #"[]"#, #" { "a" : [ 1 , -0 , 0.5 , -1.5e10 , 2E-3 , true , false , null ] } "#, "\t\r\n{\"a\":{}}\n",
        #"{"user_id":"u1"}"#, #""plain""#, #"0"#, #"{"e":"\u00e9\ud83d\ude00\n\"\\\/\b\f\r\t"}"#, "{\"é\":\"😀\"}",
    ])
    func acceptsJSON(_ text: String) {
        #expect(throws: Never.self) { try StrictJSON.check(Data(text.utf8)) }
    }

    @Test(arguments: [
        (#"{"user_id":"u1",}"#, "trailing comma in an object"), (#"[1,]"#, "trailing comma in an array"),
        (#"{"a":1}//x"#, "a comment after"), (#"{/*x*/"a":1}"#, "a comment inside"), (#"{'a':1}"#, "single quotes"),
        (#"{a:1}"#, "a bare key"), (#"{"a":01}"#, "a leading zero"), (#"{"a":1.}"#, "no digit after the point"),
        (#"{"a":.5}"#, "no digit before the point"), (#"{"a":+1}"#, "a plus sign"), (#"{"a":NaN}"#, "NaN"),
        (#"{"a":Infinity}"#, "Infinity"), (#"{"a":tru}"#, "a truncated literal"), (#"{} x"#, "text after the value"),
        (#"{}{}"#, "two values"), ("{\"a\":\"\u{01}\"}", "a raw control character"), (#"{"a":"\x"}"#, "an unknown escape"),
        (#"{"a":"\ud800"}"#, "a lone high surrogate"), (#"{"a":"\udc00"}"#, "a lone low surrogate"),
        (#"{"a":"\u12"}"#, "a short \\u escape"), (#"{"a":"x}"#, "an unclosed string"), (#"{"a":1"#, "an unclosed object"),
        ("", "nothing"), ("   ", "only whitespace"), (String(repeating: "[", count: 40) + String(repeating: "]", count: 40), "too deep"),
    ] as [(String, String)])
    func refusesWhatIsNotStrictJSON(_ text: String, _ what: String) {
        #expect(throws: StrictJSON.Refusal.self, "\(what)") { try StrictJSON.check(Data(text.utf8)) }
    }

    @Test func namesTheEncodingThatIsNotUTF8() {
        let json = #"{"user_id":"u1"}"#
        let le = Data(json.utf16.flatMap { [UInt8(truncatingIfNeeded: $0), UInt8(truncatingIfNeeded: $0 >> 8)] })
        let be = Data(json.utf16.flatMap { [UInt8(truncatingIfNeeded: $0 >> 8), UInt8(truncatingIfNeeded: $0)] })
        let utf32 = Data(json.unicodeScalars.flatMap { [UInt8(truncatingIfNeeded: $0.value), 0, 0, 0] })
        let cases: [(Data, String)] = [
            (Data([0xFF, 0xFE]) + le, "UTF-16 with a byte order mark"), (Data([0xFE, 0xFF]) + be, "UTF-16 with a byte order mark"),
            (le, "UTF-16"), (be, "UTF-16"), (utf32, "UTF-32"), (Data([0xFF, 0xFE, 0, 0]) + utf32, "UTF-32 with a byte order mark"),
            (Data([0xEF, 0xBB, 0xBF]) + Data(json.utf8), "UTF-8 with a byte order mark"),
            (Data(#"{"a":""#.utf8) + Data([0xC3, 0x28]) + Data(#""}"#.utf8), "invalid UTF-8 at byte 6"),
            (Data(#"{"a":""#.utf8) + Data([0xC0, 0xAF]) + Data(#""}"#.utf8), "invalid UTF-8 at byte 6"),
            (Data(#"{"a":""#.utf8) + Data([0xED, 0xA0, 0x80]) + Data(#""}"#.utf8), "invalid UTF-8 at byte 6"),
        ]
        for (bytes, encoding) in cases {
            #expect(throws: StrictJSON.Refusal.encoding(encoding), "\(Array(bytes.prefix(6)))") { try StrictJSON.check(bytes) }
        }
    }

    /// The red team's body (2026-12-06): in UTF-16 an escaped quote threw the old key check's string
    /// tracking off by one, and Foundation's decoder gave victim1 a ticket. Refused for its encoding,
    /// before any key is read.
    @Test func theRedTeamsUTF16BodyIsRefused() {
        let body = utf16WithByteOrderMark(#"{"x":"\"","user_id":"victim1","user_id":"mallory"}"#)
        func refusal(_ body: Data) -> CouponProblem? {
            do { _ = try RequestParser.issueUser(from: body) } catch { return error }
            return nil
        }
        let problem = refusal(body)
        #expect(problem?.status == .badRequest && problem?.code == "invalid_request")
        #expect(problem?.detail == "the body must be UTF-8 JSON: it is UTF-16 with a byte order mark")
        let trailing = refusal(Data(#"{"user_id":"u1",}"#.utf8))
        #expect(trailing?.detail.hasPrefix("the body must be a JSON object (RFC 8259): a key in double quotes at byte 16") == true,
                "\(trailing?.detail ?? "accepted")")
    }
}
