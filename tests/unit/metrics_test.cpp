#include "http/metrics.hpp"

#include <gtest/gtest.h>

using namespace prom::http;

TEST(Histogram, CountsEachObservationInTheFirstBucketThatHoldsIt) {
    Histogram h({0.1, 1});
    h.observe(0.1);  // le="0.1" includes the bound
    h.observe(0.5);
    h.observe(7);
    EXPECT_EQ(h.counts(), (std::vector<std::uint64_t>{1, 1, 1}));
    EXPECT_EQ(h.count(), 3u);
    EXPECT_DOUBLE_EQ(h.sum(), 7.6);
}

TEST(Metrics, BucketsAreCumulativeAndEndWithInf) {
    Snapshot s;
    s.counters.storeReply(0.0004);
    s.counters.storeReply(0.2);
    std::string text = renderMetrics(s, Format::Prometheus);
    EXPECT_NE(text.find("prom_store_request_duration_seconds_bucket{le=\"0.001\"} 1\n"), std::string::npos) << text;
    EXPECT_NE(text.find("prom_store_request_duration_seconds_bucket{le=\"0.25\"} 2\n"), std::string::npos) << text;
    EXPECT_NE(text.find("prom_store_request_duration_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos) << text;
    EXPECT_NE(text.find("prom_store_request_duration_seconds_count 2\n"), std::string::npos) << text;
}

TEST(Metrics, OpenMetricsNamesCounterFamiliesWithoutTotalAndEndsWithEof) {
    Snapshot s;
    std::string text = renderMetrics(s, Format::OpenMetrics);
    EXPECT_NE(text.find("# TYPE prom_role_transitions counter\nprom_role_transitions_total 0\n"), std::string::npos)
        << text;
    EXPECT_NE(text.find("# TYPE prom_build info\n"), std::string::npos) << text;
    EXPECT_TRUE(text.ends_with("# EOF\n"));
    std::string prom = renderMetrics(s, Format::Prometheus);
    EXPECT_NE(prom.find("# TYPE prom_role_transitions_total counter\n"), std::string::npos) << prom;
    EXPECT_EQ(prom.find("# EOF"), std::string::npos);
}

TEST(Metrics, LabelValuesAreEscaped) {
    Snapshot s;
    s.app = "a\"b\\c\nd";
    std::string text = renderMetrics(s, Format::Prometheus);
    EXPECT_NE(text.find("app=\"a\\\"b\\\\c\\nd\""), std::string::npos) << text;
}

TEST(Metrics, LeaseRemainingOnlyWhenKnownAndNeverNegative) {
    Snapshot s;
    EXPECT_EQ(renderMetrics(s, Format::Prometheus).find("\nprom_lease_remaining_seconds "), std::string::npos);
    s.leaseRemainingSeconds = -0.3;
    EXPECT_NE(renderMetrics(s, Format::Prometheus).find("prom_lease_remaining_seconds 0\n"), std::string::npos);
}

TEST(Metrics, LastErrorTimestampIsInSecondsAndZeroWithoutAnError) {
    Snapshot s;
    EXPECT_NE(renderMetrics(s, Format::Prometheus).find("\nprom_last_error_timestamp_seconds 0\n"), std::string::npos);
    s.lastErrorUSec = 1795857293250000;  // 2026-11-28T09:14:53.25Z
    std::string text = renderMetrics(s, Format::OpenMetrics);
    EXPECT_NE(text.find("# TYPE prom_last_error_timestamp_seconds gauge\nprom_last_error_timestamp_seconds "
                        "1795857293.25\n"),
              std::string::npos)
        << text;
}

TEST(Metrics, AcceptHeaderChoosesTheFormat) {
    EXPECT_EQ(negotiate(nullptr), Format::Prometheus);
    EXPECT_EQ(negotiate("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), Format::Prometheus);
    EXPECT_EQ(negotiate("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"), Format::OpenMetrics);
}
