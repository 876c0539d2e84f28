/*
 * The enrichment columns of a RowBinary row, in the events table's order: the loader writes
 * them after each event's own columns and the re-enrichment job into its answers table, so
 * both stay in step with one list.
 */
#include "enrich.h"

#include <stdint.h>
#include <string.h>

static int put_str(struct sl_ch_buf *b, const char *s)
{
    return sl_ch_rb_string(b, s, strlen(s));
}

int enrich_result_put_rowbinary(struct sl_ch_buf *b, const struct enrich_result *r)
{
    static const struct enrich_result none;
    int rc = 0;

    if (r == NULL) {
        r = &none;
    }
    /* Geo: country_code, country, region, city, postal, latitude, longitude,
     * accuracy_radius, geo_timezone, asn, as_org. */
    rc = rc != 0 ? rc : put_str(b, r->country_code);
    rc = rc != 0 ? rc : put_str(b, r->country);
    rc = rc != 0 ? rc : put_str(b, r->region);
    rc = rc != 0 ? rc : put_str(b, r->city);
    rc = rc != 0 ? rc : put_str(b, r->postal);
    rc = rc != 0 ? rc : sl_ch_rb_f64(b, r->has_location ? r->latitude : 0.0);
    rc = rc != 0 ? rc : sl_ch_rb_f64(b, r->has_location ? r->longitude : 0.0);
    rc = rc != 0 ? rc : sl_ch_rb_u16(b, r->accuracy_radius > 0 && r->accuracy_radius <= UINT16_MAX
                                            ? (uint16_t)r->accuracy_radius
                                            : 0);
    rc = rc != 0 ? rc : put_str(b, r->geo_timezone);
    rc = rc != 0 ? rc : sl_ch_rb_u32(b, r->asn);
    rc = rc != 0 ? rc : put_str(b, r->as_org);
    /* User agent: browser, browser_version, os, os_version, device, device_brand,
     * device_model, is_bot, bot_reason; then enrichment_version. */
    rc = rc != 0 ? rc : put_str(b, r->browser);
    rc = rc != 0 ? rc : put_str(b, r->browser_version);
    rc = rc != 0 ? rc : put_str(b, r->os);
    rc = rc != 0 ? rc : put_str(b, r->os_version);
    rc = rc != 0 ? rc : put_str(b, r->device);
    rc = rc != 0 ? rc : put_str(b, r->device_brand);
    rc = rc != 0 ? rc : put_str(b, r->device_model);
    rc = rc != 0 ? rc : sl_ch_rb_u8(b, r->is_bot ? 1 : 0);
    rc = rc != 0 ? rc : put_str(b, r->bot_reason);
    return rc != 0 ? rc : sl_ch_rb_u32(b, r->enrichment_version_id);
}
