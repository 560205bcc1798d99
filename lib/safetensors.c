#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "safetensors.h"

static void set_where(char *where, size_t wcap, const char *name)
{
	if (wcap == 0)
		return;
	snprintf(where, wcap, "%s", name);
}

/* A JSON integer in [0, 2^62], so that sums of two never overflow. */
static int get_u64(const json_t *v, uint64_t *out)
{
	json_int_t i;

	if (!json_is_integer(v))
		return STP_EHEADER;
	i = json_integer_value(v);
	if (i < 0 || (uint64_t)i > (UINT64_C(1) << 62))
		return STP_EHEADER;
	*out = (uint64_t)i;
	return 0;
}

static int parse_tensor(const char *name, const json_t *v, uint64_t base,
			struct stp_st_tensor *t)
{
	const json_t *dtype = json_object_get(v, "dtype");
	const json_t *shape = json_object_get(v, "shape");
	const json_t *offs = json_object_get(v, "data_offsets");
	uint64_t count = 1, b, e;
	size_t i;
	int rc;

	if (!json_is_object(v) || !json_is_string(dtype) ||
	    !json_is_array(shape) || !json_is_array(offs) ||
	    json_array_size(offs) != 2)
		return STP_EHEADER;
	if (json_string_length(dtype) > STP_MAX_DTYPE)
		return STP_EDTYPE;
	strcpy(t->dtype, json_string_value(dtype));
	t->esize = stp_dtype_size(t->dtype);
	if (t->esize == 0)
		return STP_EDTYPE;
	if (json_array_size(shape) > STP_MAX_NDIM)
		return STP_EHEADER;
	t->ndim = (unsigned)json_array_size(shape);
	for (i = 0; i < t->ndim; i++) {
		if ((rc = get_u64(json_array_get(shape, i), &t->shape[i])) < 0)
			return rc;
		if (t->shape[i] && count > (UINT64_C(1) << 62) / t->shape[i])
			return STP_ESIZE;
		count *= t->shape[i];
	}
	if ((rc = get_u64(json_array_get(offs, 0), &b)) < 0 ||
	    (rc = get_u64(json_array_get(offs, 1), &e)) < 0)
		return rc;
	if (b > e)
		return STP_ERANGE;
	if (count > (UINT64_C(1) << 62) / t->esize || count * t->esize != e - b)
		return STP_ESIZE;
	t->begin = base + b;
	t->end = base + e;
	t->name = strdup(name);
	return t->name ? 0 : STP_ENOMEM;
}

static int by_offset(const void *pa, const void *pb)
{
	const struct stp_st_tensor *a = pa, *b = pb;

	if (a->begin != b->begin)
		return a->begin < b->begin ? -1 : 1;
	if (a->end != b->end)
		return a->end < b->end ? -1 : 1;
	return strcmp(a->name, b->name);
}

static int check_metadata(const json_t *v)
{
	const char *key;
	json_t *val;

	if (!json_is_object(v))
		return STP_EHEADER;
	json_object_foreach((json_t *)v, key, val)
		if (!json_is_string(val))
			return STP_EHEADER;
	return 0;
}

int stp_st_parse(const uint8_t *json, size_t n, struct stp_st_header *out,
		 char *where, size_t wcap)
{
	json_error_t jerr;
	json_t *root;
	const char *key;
	json_t *val;
	uint64_t base = 8 + (uint64_t)n, prev_end;
	size_t k = 0;
	int rc = 0;

	memset(out, 0, sizeof *out);
	out->header_len = n;
	out->data_end = base;
	set_where(where, wcap, "");
	root = json_loadb((const char *)json, n,
			  JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!root) {
		set_where(where, wcap, jerr.text);
		return STP_EJSON;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		return STP_EHEADER;
	}
	out->tensors = calloc(json_object_size(root) + 1, sizeof *out->tensors);
	if (!out->tensors) {
		json_decref(root);
		return STP_ENOMEM;
	}
	json_object_foreach(root, key, val) {
		if (strcmp(key, "__metadata__") == 0) {
			rc = check_metadata(val);
		} else {
			rc = parse_tensor(key, val, base, &out->tensors[k]);
			if (out->tensors[k].name)
				k++;
		}
		if (rc < 0) {
			set_where(where, wcap, key);
			break;
		}
	}
	json_decref(root);
	out->count = k;
	if (rc < 0) {
		stp_st_free(out);
		return rc;
	}
	qsort(out->tensors, k, sizeof *out->tensors, by_offset);
	prev_end = base;
	for (size_t i = 0; i < k; i++) {
		const struct stp_st_tensor *t = &out->tensors[i];

		/* Zero-size tensors too: each must sit at or after the
		 * previous end, so file order is well defined. */
		if (t->begin < prev_end) {
			set_where(where, wcap, t->name);
			stp_st_free(out);
			return STP_EOVERLAP;
		}
		if (t->end > prev_end)
			prev_end = t->end;
	}
	out->data_end = prev_end;
	return 0;
}

void stp_st_free(struct stp_st_header *h)
{
	for (size_t i = 0; i < h->count; i++)
		free(h->tensors[i].name);
	free(h->tensors);
	h->tensors = NULL;
	h->count = 0;
}

int stp_st_sniff(const uint8_t *p, size_t n)
{
	uint64_t len;

	if (n < 9)
		return 0;
	len = stp_get64(p);
	return len >= 2 && len <= STP_ST_MAX_HEADER && p[8] == '{';
}
