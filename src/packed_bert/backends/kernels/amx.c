/* packed-bert's own CPU kernels on Intel AMX tiles: linear layers, either static int8 (u8
   activations x s8 weights, the input's quantization before and the scales after) or bf16 (bf16
   activations x bf16 weights, fp32 sums), with the bias and GELU in the same call; attention per
   sequence in bf16 (or with its products in int8, a recipe's choice); the residual add with
   LayerNorm; BERT's embedding rows and its QA head; the whole encoder, and the whole forward pass,
   in one call each; and the tiles' issue rate. Built at first use by backends/amx_kernels.py with
   the system C compiler (-march=native), as one translation unit: the parts below are included in
   this order, each using what the ones before it define. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <omp.h>

#include "tiles.h"
#include "gelu.h"
#include "common.h"
#include "linear.h"
#include "grids.h"
#include "softmax.h"
#include "attention_int8.h"
#include "attention.h"
#include "layernorm.h"
#include "ends.h"
#include "encoder.h"
#include "forward.h"
