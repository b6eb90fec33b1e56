/* The whole forward pass in one call, from a batch's rows to its logits: the sequences' tokens
   gathered, the embeddings, the encoder and the QA head, no Python in between. Part of amx.c's
   one translation unit (included there, in order; not compiled alone). */

/* What the forward pass reads besides the batch: the encoder's layers and the two ends */
typedef struct {
    const pb_layer *layers;
    int count, heads, dim, attention, residual_kind; /* attention: pb_attention's kind */
    float q_mul;                                     /* Q's multiplier (pb_encoder's) */
    const float *word, *position, *type;             /* the embeddings' tables, fp32 */
    long word_rows, position_rows, type_rows;
    const float *gamma, *beta; /* the embeddings' LayerNorm */
    float eps;
    const float *qa_weight, *qa_bias; /* [2, H], [2] */
} pb_model;

/* the calling thread's memory for a call's tokens, kept from call to call */
static __thread thread_buffer forward_memory;

/* logits [rows][length][2] of rows of `length` tokens (ids, segments, positions int32 [rows][length])
   holding the sequences seq_lens [rows][slots] (int32, 0: an empty slot) back to back from each
   row's first token: the embeddings (pb_embeddings), pb_encoder and the QA head (pb_qa_head) on
   the sequences' tokens alone, in the modules' order, so the same bits; every other position gets
   the QA head's bias (the modules' zero rows into it). Returns 0; 1 for an id past its table or
   lengths that do not fit the rows; 2 where memory could not be had; 3 where the encoder does not
   take the batch (no token, or a sequence longer than MAX_SEQ): the modules run it then; 4 where
   the encoder or the QA head refused its arguments. */
int pb_forward(const pb_model *m, const int32_t *ids, const int32_t *segments, const int32_t *positions,
               const int32_t *seq_lens, long rows, long length, long slots, float *logits) {
    long seqs = 0, tokens = 0;
    for (long r = 0; r < rows; r++) {
        long used = 0;
        for (long k = 0; k < slots; k++) {
            const long n = seq_lens[r * slots + k];
            if (n < 0) return 1;
            if (n > MAX_SEQ) return 3;
            used += n, seqs += n > 0, tokens += n;
        }
        if (used > length) return 1;
    }
    if (tokens == 0) return 3;
    const long H = (long)m->heads * m->dim, padded = (tokens + BLOCK_M - 1) / BLOCK_M * BLOCK_M;
    const size_t rb = float_bytes(m->residual_kind);
    /* index, ids, positions, segments (a token's), starts, lens (a sequence's), its logits, the
       residual stream (whole blocks of rows) */
    const size_t sizes[8] = {tokens * 8, tokens * 8, tokens * 8, tokens * 8, seqs * 8, seqs * 8, tokens * 8, padded * H * rb};
    void *part[8];
    if (thread_parts(&forward_memory, part, sizes, 8)) return 2;
    long *index = part[0], *tid = part[1], *tpos = part[2], *tseg = part[3], *starts = part[4], *lens = part[5];
    float *token_logits = part[6];
    for (long r = 0, t = 0, s = 0; r < rows; r++) {
        long at = r * length;
        for (long k = 0; k < slots; k++) {
            const long n = seq_lens[r * slots + k];
            if (n == 0) continue;
            starts[s] = t, lens[s] = n, s++;
            for (long j = 0; j < n; j++, t++, at++) index[t] = at, tid[t] = ids[at], tpos[t] = positions[at], tseg[t] = segments[at];
        }
    }
    void *hidden = part[7];
    memset((char *)hidden + tokens * H * rb, 0, (padded - tokens) * H * rb); /* whole blocks of rows: zeros past the last */
    int status = pb_embeddings(m->word, m->word_rows, tid, m->position, m->position_rows, tpos, m->type, m->type_rows, tseg,
                               tokens, H, m->gamma, m->beta, m->eps, hidden, m->residual_kind);
    if (status) return status;
    status = pb_encoder(m->layers, m->count, tokens, m->heads, m->dim, m->q_mul, starts, lens, seqs, m->residual_kind, hidden,
                        m->attention);
    if (status) return status == 2 ? 2 : 4;
    if (pb_qa_head(hidden, m->residual_kind, tokens, H, m->qa_weight, m->qa_bias, token_logits)) return 4;
    const long positions_all = rows * length;
    for (long i = 0; i < positions_all; i++) logits[2 * i] = m->qa_bias[0], logits[2 * i + 1] = m->qa_bias[1];
    for (long t = 0; t < tokens; t++) logits[2 * index[t]] = token_logits[2 * t], logits[2 * index[t] + 1] = token_logits[2 * t + 1];
    return 0;
}
