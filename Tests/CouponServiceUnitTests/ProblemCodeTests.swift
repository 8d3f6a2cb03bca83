@testable import CouponService
import Foundation
import Testing

/// Every code is spelled once in Swift (`TicketOutcome`, `CouponProblem.Code`); these hold that one
/// spelling against the two other places that must agree: the SQL functions' outcomes and openapi.yaml.
@Suite struct ProblemCodeTests {
    static let root = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The items of the first `enum: [...]` on or after the line `after` names, in openapi.yaml.
    static func openAPIEnum(after marker: String) throws -> Set<String> {
        let text = try String(contentsOf: root.appending(path: "openapi.yaml"), encoding: .utf8)
        let start = try #require(text.range(of: marker), "openapi.yaml has no \(marker)")
        let open = try #require(text[start.upperBound...].range(of: "enum: ["))
        let close = try #require(text[open.upperBound...].firstIndex(of: "]"))
        return Set(text[open.upperBound..<close].split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })
    }

    /// The quoted words of a function file that are outcomes: snake-case literals, less the names of
    /// things the file also quotes (an extension, a table, an argument, a setting).
    static func outcomes(inFunction name: String) throws -> Set<String> {
        let sql = try String(contentsOf: root.appending(path: "migrations/functions/\(name).sql"), encoding: .utf8)
        let notOutcomes: Set<String> = ["citus", "coupons", "p_coupon_id", "transaction_isolation", ""]
        let literals = sql.matches(of: /'([a-z_]*)'/).map { String($0.output.1) }
        return Set(literals).subtracting(notOutcomes)
    }

    @Test func theProblemCodesAreOpenAPIs() throws {
        let swift = Set(CouponProblem.Code.allCases.map(\.rawValue) + TicketOutcome.allCases.filter(\.isRefusal).map(\.rawValue))
        #expect(try Self.openAPIEnum(after: "    Problem:") == swift)
    }

    @Test func theOutcomesAreTheSQLFunctions() throws {
        let functions = ["issue_tickets", "ticket_of", "redeem_ticket", "restore_ticket", "return_ticket"]
        let sql = try functions.reduce(into: Set<String>()) { $0.formUnion(try Self.outcomes(inFunction: $1)) }
        #expect(sql == Set(TicketOutcome.allCases.map(\.rawValue)))
        #expect(try Self.outcomes(inFunction: "issue_tickets") == Set(TicketOutcome.ofIssuance.map(\.rawValue)))
    }

    @Test func aGrantAnswersTheOutcomesOfIssuance() throws {
        // coupon_not_found answers the whole grant 404, so no result carries it.
        let granted = try Self.openAPIEnum(after: "outcome: { type: string,")
        #expect(granted == Set(TicketOutcome.ofIssuance.filter { $0 != .couponNotFound }.map(\.rawValue)))
    }

    @Test func theMetricsReasonsAreTheIssueRefusals() {
        #expect(CouponMetrics.refusalReasons == ["sold_out", "not_started", "ended", "coupon_not_found", "unavailable"])
    }
}

/// The user id rule, spelled once in Swift, against openapi.yaml's `UserID` pattern.
@Suite struct UserIDRuleTests {
    @Test func theUserIDRuleIsOpenAPIs() throws {
        let text = try String(contentsOf: ProblemCodeTests.root.appending(path: "openapi.yaml"), encoding: .utf8)
        let schema = try #require(text.range(of: "    UserID:"))
        let line = try #require(text[schema.upperBound...].firstMatch(of: /pattern: "(.*)"/))
        let pattern = try Regex(String(line.output.1))
        for byte in UInt8.min...UInt8.max {
            let one = String(decoding: [byte], as: UTF8.self)
            #expect(RequestParser.isUserID([byte]) == (one.wholeMatch(of: pattern) != nil), "byte \(byte)")
        }
        for length in [0, 1, RequestParser.maxUserIDLength, RequestParser.maxUserIDLength + 1] {
            let id = String(repeating: "a", count: length)
            #expect(RequestParser.isUserID(id.utf8) == (id.wholeMatch(of: pattern) != nil), "length \(length)")
        }
    }
}

/// The ticket code rule, spelled once in Swift (`TicketStore.Code`), against openapi.yaml's `TicketCode` pattern.
@Suite struct TicketCodeRuleTests {
    @Test func theTicketCodeRuleIsOpenAPIs() throws {
        let text = try String(contentsOf: ProblemCodeTests.root.appending(path: "openapi.yaml"), encoding: .utf8)
        let parameter = try #require(text.range(of: "    TicketCode:"))
        let line = try #require(text[parameter.upperBound...].firstMatch(of: /pattern: "(.*)"/))
        let pattern = try Regex(String(line.output.1))
        let hex = "0123456789abcdef0123456789abcdef"
        var samples = [hex, "1-\(hex)", "9223372036854775807-\(hex)", "9999999999999999999-\(hex)", "0-\(hex)", "01-\(hex)",
                       "-\(hex)", "1-", "", hex.uppercased(), "1-\(hex)0", String(hex.dropLast()), "1-1-\(hex)", "1--\(hex)"]
        for byte in UInt8(0x20)...UInt8(0x7e) {
            let character = String(UnicodeScalar(byte))
            samples += [String(hex.dropLast()) + character, "1" + character + hex, character + "-" + hex]
        }
        for sample in samples {
            #expect((TicketStore.Code(sample) != nil) == (sample.wholeMatch(of: pattern) != nil), "\(sample)")
        }
    }
}

/// One version for the binary (`--version`) and the API it serves.
@Suite struct VersionTests {
    @Test func theBinaryAndOpenAPIShareTheirVersion() throws {
        let text = try String(contentsOf: ProblemCodeTests.root.appending(path: "openapi.yaml"), encoding: .utf8)
        let version = try #require(text.firstMatch(of: /\n  version: ([0-9.]+)\n/))
        #expect(String(version.output.1) == couponServiceVersion)
    }
}

/// Every event type is spelled once in Swift (`EventType`); the SQL that writes events and
/// openapi.yaml must name the same ones.
@Suite struct EventTypeTests {
    @Test func theEventTypesAreTheSQLsAndOpenAPIs() throws {
        let functions = try FileManager.default.contentsOfDirectory(
            at: ProblemCodeTests.root.appending(path: "migrations/functions"), includingPropertiesForKeys: nil)
        var written: Set<String> = []
        for file in functions where file.pathExtension == "sql" {
            let sql = try String(contentsOf: file, encoding: .utf8)
            written.formUnion(sql.matches(of: /'((?:ticket|coupon)\.[a-z_]+)'/).map { String($0.output.1) })
        }
        let swift = Set(EventType.allCases.map(\.rawValue))
        #expect(written == swift)
        #expect(try ProblemCodeTests.openAPIEnum(after: "    EventType:") == swift)
    }
}

/// The webhook URL rule, spelled once in Swift, against openapi.yaml's `NewWebhook.url` pattern.
@Suite struct WebhookURLRuleTests {
    @Test func theWebhookURLRuleIsOpenAPIs() throws {
        let text = try String(contentsOf: ProblemCodeTests.root.appending(path: "openapi.yaml"), encoding: .utf8)
        let schema = try #require(text.range(of: "    NewWebhook:"))
        let line = try #require(text[schema.upperBound...].firstMatch(of: /pattern: "(.*)"/))
        let pattern = try Regex(String(line.output.1))
        let urls = [
            "http://127.0.0.1:9000/hooks", "HTTPS://shop.example/a?b=c&d=%2F", "http://a:65535", "http://a:65536", "http://a:0/",
            "http://a:08/", "ftp://a/", "http://u:p@a/", "http://a/x#f", "http://a/x y", "http://a/{x}", "http://[::1]/", "http://",
            "http://a/%zz", "http://a/%2", "http://a?q", "https://a.b-c.d/", "http://a/é",
        ]
        for url in urls {
            #expect((url.wholeMatch(of: RequestParser.webhookURL) != nil) == (url.wholeMatch(of: pattern) != nil), "\(url)")
        }
    }
}
