#include <memory>
#include <tuple>

#include "core/gzip.h"
#include "query/resources.h"
#include "store/event_export.h"

namespace nucleon {

HttpResponse ExportResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req,
                            const HttpRequest& request) {
  auto param = [&req](const char* name) {
    auto it = req.params.find(name);
    return it == req.params.end() ? std::string() : it->second;
  };
  int64_t from_ms = INT64_MIN, to_ms = INT64_MAX;
  for (auto [name, bound, end] : {std::tuple{"start", &from_ms, false}, {"end", &to_ms, true}}) {
    const std::string text = param(name);
    if (text.empty()) continue;
    const auto ms = ParseExportBound(text, end);
    if (!ms) {
      return ErrorResponse(Status::InvalidArgument(
          std::string(name) + " must be a Unix timestamp in seconds or an ISO 8601 time"));
    }
    *bound = *ms;
  }
  if (to_ms < from_ms)
    return ErrorResponse(Status::InvalidArgument("end must not be before start"));
  const auto format = ParseExportFormat(param("format"));
  if (!format) return ErrorResponse(Status::InvalidArgument("format must be ndjson or csv"));
  if (!deps.store->Ready()) {
    return ErrorResponse(Status::Unavailable("the store is loading; try again in a moment"));
  }
  HttpResponse r;
  r.content_type = std::string(ExportContentType(*format));
  const bool gzip = AcceptsGzip(request.Header("accept-encoding"));
  if (gzip) r.headers.emplace_back("Content-Encoding", "gzip");
  r.headers.emplace_back("Vary", "Accept-Encoding");
  r.headers.emplace_back("Content-Disposition",
                         std::string("attachment; filename=\"") + std::string(app) +
                             (*format == ExportFormat::kCsv ? ".csv\"" : ".ndjson\""));
  EventStore* store = deps.store;
  r.stream = [store, app = std::string(app), from_ms, to_ms, format = *format,
              gzip](const BodyWriter& write) -> Status {
    if (!gzip) return ExportApp(*store, app, from_ms, to_ms, format, write);
    GzipStream zip;
    NUCLEON_RETURN_IF_ERROR(
        ExportApp(*store, app, from_ms, to_ms, format,
                  [&](std::string_view chunk) { return write(zip.Add(chunk)); }));
    write(zip.Finish());
    return Status::Ok();
  };
  return r;
}

}  // namespace nucleon
