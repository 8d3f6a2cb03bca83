@testable import CouponService
import CouponTestSupport
import Foundation
import Testing

/// docs/schema.sql is the schema a fresh database has after every migration (scripts/schema.sh).
@Suite(.migratedDatabase) struct SchemaDocumentTests {
    static let document = TestDatabase.migrationsFolder.deletingLastPathComponent().appending(path: "docs/schema.sql")

    /// What differs between two dumps of the same schema: the script's header, pg_dump's version lines
    /// and the random key of its `\restrict` lines.
    static func normalized(_ text: String) -> [Substring] {
        text.split(separator: "\n", omittingEmptySubsequences: false).filter { line in
            !line.hasPrefix("-- schema.sh:") && !line.hasPrefix("-- Dumped from ") && !line.hasPrefix("-- Dumped by ")
                && !line.hasPrefix("\\restrict ") && !line.hasPrefix("\\unrestrict ")
        }
    }

    /// `pg_dump --schema-only` of a database, normalized.
    static func schema(of url: String) throws -> [Substring] {
        let dump = Process()
        dump.executableURL = URL(filePath: "/usr/bin/env")
        dump.arguments = ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", url]
        let output = Pipe()
        dump.standardOutput = output
        try dump.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        dump.waitUntilExit()
        try #require(dump.terminationStatus == 0, "pg_dump failed")
        return normalized(String(decoding: data, as: UTF8.self))
    }

    /// Where two schemas first differ, or nil.
    static func firstDifference(_ a: [Substring], _ b: [Substring]) -> String? {
        if let line = zip(a, b).enumerated().first(where: { $0.element.0 != $0.element.1 }) {
            return "line \(line.offset): \(line.element.0) | \(line.element.1)"
        }
        return a.count == b.count ? nil : "length \(a.count) against \(b.count)"
    }

    @Test func theSchemaDocumentIsCurrent() async throws {
        try await TestDatabase.withScratchDatabase(migrated: true) { url in
            let current = try Self.schema(of: url)
            let written = Self.normalized(try String(contentsOf: Self.document, encoding: .utf8))
            let difference = Self.firstDifference(current, written)
            #expect(difference == nil, "docs/schema.sql is stale (run scripts/schema.sh); first difference at \(difference ?? "")")
        }
    }
}
