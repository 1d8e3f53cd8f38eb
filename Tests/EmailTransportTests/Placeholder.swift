import XCTest
final class EmailTransportTestsPlaceholder: XCTestCase {}
