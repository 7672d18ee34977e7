//! `exp` and `expf` exactly as glibc computes them on x86-64 with FMA (its `__exp_fma` and
//! `__expf_fma`, from Arm's optimized-routines), in Rust: one value at a time, and eight at a
//! time with AVX-512.
//!
//! Prediction calls exp for every sample's softmax, every sigma and every KL term: in per-pixel
//! runs 9% of the CPU went to glibc's scalar calls. The same operations on eight lanes give the
//! same bits (each lane runs the scalar algorithm's sequence of IEEE operations; a fused
//! multiply-add where glibc's FMA build has one, found by disassembling it), so outputs do not
//! change, and the exps no longer depend on which libm (or which of its builds) the machine has.
//! A lane that needs one of the special cases (overflow, underflow, a tiny, non-finite or, for
//! `exp`, |x| >= 512 argument) is recomputed by the scalar code.
//!
//! Algorithm, constants and tables: Szabolcs Nagy, Arm optimized-routines (`math/exp.c`,
//! `math/expf.c`, `math/exp_data.c`, `math/exp2f_data.c`), Copyright (c) 2017-2018 Arm
//! Limited, MIT OR Apache-2.0 WITH LLVM-exception; as shipped in glibc since 2.28.
//! `cargo run --release -p model --example exp_check` compares both with the machine's libm,
//! bit for bit (`expf` on every f32).

/// exp: 2^(k/N) from the table, N = 128.
const EXP_TABLE_BITS: u32 = 7;
/// N / ln 2.
const INV_LN2_N: f64 = f64::from_bits(0x4067_1547_652b_82fe);
/// -ln 2 / N in two parts.
const NEG_LN2_HI_N: f64 = f64::from_bits(0xbf76_2e42_fefa_0000);
const NEG_LN2_LO_N: f64 = f64::from_bits(0xbd0c_f79a_bc9e_3b3a);
/// exp(r) - 1 - r ~ r^2 (C2 + r C3) + r^4 (C4 + r C5).
const C2: f64 = f64::from_bits(0x3fdf_ffff_ffff_fdbd);
const C3: f64 = f64::from_bits(0x3fc5_5555_5555_543c);
const C4: f64 = f64::from_bits(0x3fa5_5555_cf17_2b91);
const C5: f64 = f64::from_bits(0x3f81_1111_67a4_d017);
/// 1.5 * 2^52: adding it rounds to an integer and leaves that integer in the low bits.
const SHIFT: f64 = f64::from_bits(0x4338_0000_0000_0000);

/// expf: 2^(k/N) from the table, N = 32.
const EXPF_TABLE_BITS: u32 = 5;
/// N / ln 2.
const F_INV_LN2_N: f64 = f64::from_bits(0x4047_1547_652b_82fe);
/// 2^(r/N) ~ F0 r^3 + F1 r^2 + F2 r + 1.
const F0: f64 = f64::from_bits(0x3ebc_6af8_4b91_2394);
const F1: f64 = f64::from_bits(0x3f2e_bfce_50fa_c4f3);
const F2: f64 = f64::from_bits(0x3f96_2e42_ff0c_52d6);

/// exp: for i < N, [2i] the bits of tail and [2i + 1] the bits of 2^(i/N) less i << 45, with
/// 2^(i/N) ~ (that value) (1 + tail).
const EXP_TABLE: [u64; 256] = [
    0x0000_0000_0000_0000,
    0x3ff0_0000_0000_0000,
    0x3c9b_3b4f_1a88_bf6e,
    0x3fef_f63d_a9fb_3335,
    0xbc71_6013_9cd8_dc5d,
    0x3fef_ec9a_3e77_8061,
    0xbc90_5e7a_1087_66d1,
    0x3fef_e315_e86e_7f85,
    0x3c8c_d252_3567_f613,
    0x3fef_d9b0_d315_8574,
    0xbc8b_ce80_23f9_8efa,
    0x3fef_d06b_29dd_f6de,
    0x3c60_f74e_61e6_c861,
    0x3fef_c745_1875_9bc8,
    0x3c90_a3e4_5b33_d399,
    0x3fef_be3e_cac6_f383,
    0x3c97_9aa6_5d83_7b6d,
    0x3fef_b558_6cf9_890f,
    0x3c8e_b51a_92fd_effc,
    0x3fef_ac92_2b72_47f7,
    0x3c3e_be3d_702f_9cd1,
    0x3fef_a3ec_32d3_d1a2,
    0xbc6a_0334_8990_6e0b,
    0x3fef_9b66_affe_d31b,
    0xbc95_5652_2a2f_bd0e,
    0x3fef_9301_d012_5b51,
    0xbc50_80ef_8c4e_ea55,
    0x3fef_8abd_c06c_31cc,
    0xbc91_c923_b9d5_f416,
    0x3fef_829a_aea9_2de0,
    0x3c80_d3e3_e95c_55af,
    0x3fef_7a98_c8a5_8e51,
    0xbc80_1b15_eaa5_9348,
    0x3fef_72b8_3c7d_517b,
    0xbc8f_1ff0_55de_323d,
    0x3fef_6af9_388c_8dea,
    0x3c8b_898c_3f13_53bf,
    0x3fef_635b_eb6f_cb75,
    0xbc96_d99c_7611_eb26,
    0x3fef_5be0_8404_5cd4,
    0x3c9a_ecf7_3e3a_2f60,
    0x3fef_5487_3168_b9aa,
    0xbc8f_e782_cb86_389d,
    0x3fef_4d50_22fc_d91d,
    0x3c8a_6f41_44a6_c38d,
    0x3fef_463b_8862_8cd6,
    0x3c80_7a05_b0e4_047d,
    0x3fef_3f49_917d_dc96,
    0x3c96_8efd_e3a8_a894,
    0x3fef_387a_6e75_6238,
    0x3c87_5e18_f274_487d,
    0x3fef_31ce_4fb2_a63f,
    0x3c80_472b_981f_e7f2,
    0x3fef_2b45_65e2_7cdd,
    0xbc96_b87b_3f71_085e,
    0x3fef_24df_e1f5_6381,
    0x3c82_f7e1_6d09_ab31,
    0x3fef_1e9d_f51f_dee1,
    0xbc3d_219b_1a6f_bffa,
    0x3fef_187f_d0da_d990,
    0x3c8b_3782_720c_0ab4,
    0x3fef_1285_a6e4_030b,
    0x3c6e_1492_89ce_cb8f,
    0x3fef_0caf_a93e_2f56,
    0x3c83_4d75_4db0_abb6,
    0x3fef_06fe_0a31_b715,
    0x3c86_4201_e2ac_744c,
    0x3fef_0170_fc4c_d831,
    0x3c8f_dd39_5dd3_f84a,
    0x3fee_fc08_b264_16ff,
    0xbc86_a380_3b8e_5b04,
    0x3fee_f6c5_5f92_9ff1,
    0xbc92_4aed_cc4b_5068,
    0x3fee_f1a7_373a_a9cb,
    0xbc99_07f8_1b51_2d8e,
    0x3fee_ecae_6d05_d866,
    0xbc71_d1e8_3e94_36d2,
    0x3fee_e7db_34e5_9ff7,
    0xbc99_1919_b3ce_1b15,
    0x3fee_e32d_c313_a8e5,
    0x3c85_9f48_a72a_4c6d,
    0x3fee_dea6_4c12_3422,
    0xbc93_1260_7a28_698a,
    0x3fee_da45_04ac_801c,
    0xbc58_a78f_4817_895b,
    0x3fee_d60a_21f7_2e2a,
    0xbc7c_2c9b_6749_9a1b,
    0x3fee_d1f5_d950_a897,
    0x3c43_63ed_60c2_ac11,
    0x3fee_ce08_6061_892d,
    0x3c96_6609_3b06_64ef,
    0x3fee_ca41_ed1d_0057,
    0x3c6e_cce1_daa1_0379,
    0x3fee_c6a2_b5c1_3cd0,
    0x3c93_ff8e_3f0f_1230,
    0x3fee_c32a_f0d7_d3de,
    0x3c76_90ce_bb7a_afb0,
    0x3fee_bfda_d536_2a27,
    0x3c93_1dbd_eb54_e077,
    0x3fee_bcb2_99fd_dd0d,
    0xbc8f_9434_0071_a38e,
    0x3fee_b9b2_769d_2ca7,
    0xbc87_decc_dc93_a349,
    0x3fee_b6da_a2cf_6642,
    0xbc78_dec6_bd0f_385f,
    0x3fee_b42b_569d_4f82,
    0xbc86_1246_ec7b_5cf6,
    0x3fee_b1a4_ca5d_920f,
    0x3c93_3505_18fd_d78e,
    0x3fee_af47_36b5_27da,
    0x3c7b_98b7_2f8a_9b05,
    0x3fee_ad12_d497_c7fd,
    0x3c90_63e1_e21c_5409,
    0x3fee_ab07_dd48_5429,
    0x3c34_c785_5019_c6ea,
    0x3fee_a926_8a59_46b7,
    0x3c94_32e6_2b64_c035,
    0x3fee_a76f_15ad_2148,
    0xbc8c_e44a_6199_769f,
    0x3fee_a5e1_b976_dc09,
    0xbc8c_33c5_3bef_4da8,
    0x3fee_a47e_b03a_5585,
    0xbc84_5378_892b_e9ae,
    0x3fee_a346_34cc_c320,
    0xbc93_cedd_7856_5858,
    0x3fee_a238_8255_2225,
    0x3c57_10aa_807e_1964,
    0x3fee_a155_d44c_a973,
    0xbc93_b3ef_bf5e_2228,
    0x3fee_a09e_667f_3bcd,
    0xbc6a_12ad_8734_b982,
    0x3fee_a012_750b_dabf,
    0xbc63_67ef_b86d_a9ee,
    0x3fee_9fb2_3c65_1a2f,
    0xbc80_dc3d_54e0_8851,
    0x3fee_9f7d_f951_9484,
    0xbc78_1f64_7e5a_3ecf,
    0x3fee_9f75_e8ec_5f74,
    0xbc86_ee4a_c08b_7db0,
    0x3fee_9f9a_48a5_8174,
    0xbc86_1932_1e55_e68a,
    0x3fee_9feb_5642_67c9,
    0x3c90_9ccb_5e09_d4d3,
    0x3fee_a069_4fde_5d3f,
    0xbc7b_32dc_b94d_a51d,
    0x3fee_a114_73eb_0187,
    0x3c94_ecfd_5467_c06b,
    0x3fee_a1ed_0130_c132,
    0x3c65_ebe1_abd6_6c55,
    0x3fee_a2f3_36cf_4e62,
    0xbc88_a1c5_2fb3_cf42,
    0x3fee_a427_543e_1a12,
    0xbc93_69b6_f13b_3734,
    0x3fee_a589_994c_ce13,
    0xbc80_5e84_3a19_ff1e,
    0x3fee_a71a_4623_c7ad,
    0xbc94_d450_d872_576e,
    0x3fee_a8d9_9b44_92ed,
    0x3c90_ad67_5b0e_8a00,
    0x3fee_aac7_d98a_6699,
    0x3c8d_b72f_c1f0_eab4,
    0x3fee_ace5_422a_a0db,
    0xbc65_b660_9cc5_e7ff,
    0x3fee_af32_16b5_448c,
    0x3c7b_f683_59f3_5f44,
    0x3fee_b1ae_9915_7736,
    0xbc93_091f_a71e_3d83,
    0x3fee_b45b_0b91_ffc6,
    0xbc5d_a9b8_8b6c_1e29,
    0x3fee_b737_b0cd_c5e5,
    0xbc6c_23f9_7c90_b959,
    0x3fee_ba44_cbc8_520f,
    0xbc92_4343_22f4_f9aa,
    0x3fee_bd82_9fde_4e50,
    0xbc85_ca6c_d766_8e4b,
    0x3fee_c0f1_70ca_07ba,
    0x3c71_affc_2b91_ce27,
    0x3fee_c491_82a3_f090,
    0x3c6d_d235_e10a_73bb,
    0x3fee_c863_19e3_2323,
    0xbc87_c504_2262_2263,
    0x3fee_cc66_7b5d_e565,
    0x3c8b_1c86_e3e2_31d5,
    0x3fee_d09b_ec4a_2d33,
    0xbc91_bbd1_d3bc_bb15,
    0x3fee_d503_b23e_255d,
    0x3c90_cc31_9cee_31d2,
    0x3fee_d99e_1330_b358,
    0x3c84_6984_6e73_5ab3,
    0x3fee_de6b_5579_fdbf,
    0xbc82_dfcd_978e_9db4,
    0x3fee_e36b_bfd3_f37a,
    0x3c8c_1a77_92cb_3387,
    0x3fee_e89f_995a_d3ad,
    0xbc90_7b8f_4ad1_d9fa,
    0x3fee_ee07_298d_b666,
    0xbc55_c3d9_56dc_aeba,
    0x3fee_f3a2_b84f_15fb,
    0xbc90_a40e_3da6_f640,
    0x3fee_f972_8de5_593a,
    0xbc68_d6f4_38ad_9334,
    0x3fee_ff76_f2fb_5e47,
    0xbc91_eee2_6b58_8a35,
    0x3fef_05b0_30a1_064a,
    0x3c74_ffd7_0a5f_ddcd,
    0x3fef_0c1e_904b_c1d2,
    0xbc91_bdfb_fa92_98ac,
    0x3fef_12c2_5bd7_1e09,
    0x3c73_6eae_30af_0cb3,
    0x3fef_199b_dd85_529c,
    0x3c8e_e332_5c9f_fd94,
    0x3fef_20ab_5fff_d07a,
    0x3c84_e08f_d109_59ac,
    0x3fef_27f1_2e57_d14b,
    0x3c63_cdaf_384e_1a67,
    0x3fef_2f6d_9406_e7b5,
    0x3c67_6b2c_6c92_1968,
    0x3fef_3720_dcef_9069,
    0xbc80_8a18_83cc_b5d2,
    0x3fef_3f0b_555d_c3fa,
    0xbc8f_ad5d_3fff_fa6f,
    0x3fef_472d_4a07_897c,
    0xbc90_0dae_3875_a949,
    0x3fef_4f87_080d_89f2,
    0x3c74_a385_a63d_07a7,
    0x3fef_5818_dcfb_a487,
    0xbc82_919e_2040_220f,
    0x3fef_60e3_16c9_8398,
    0x3c8e_5a50_d5c1_92ac,
    0x3fef_69e6_03db_3285,
    0x3c84_3a59_ac01_6b4b,
    0x3fef_7321_f301_b460,
    0xbc82_d521_07b4_3e1f,
    0x3fef_7c97_337b_9b5f,
    0xbc89_2ab9_3b47_0dc9,
    0x3fef_8646_14f5_a129,
    0x3c74_b604_603a_88d3,
    0x3fef_902e_e78b_3ff6,
    0x3c83_c5ec_519d_7271,
    0x3fef_9a51_fbc7_4c83,
    0xbc8f_f712_8fd3_91f0,
    0x3fef_a4af_a2a4_90da,
    0xbc8d_ae98_e223_747d,
    0x3fef_af48_2d8e_67f1,
    0x3c8e_c3bc_41aa_2008,
    0x3fef_ba1b_ee61_5a27,
    0x3c84_2b94_c3a9_eb32,
    0x3fef_c52b_376b_ba97,
    0x3c8a_64a9_31d1_85ee,
    0x3fef_d076_5b6e_4540,
    0xbc8e_37ba_e43b_e3ed,
    0x3fef_dbfd_ad9c_be14,
    0x3c77_893b_4d91_cd9d,
    0x3fef_e7c1_819e_90d8,
    0x3c53_05c1_4160_cc89,
    0x3fef_f3c2_2b8f_71f1,
];

/// expf: the bits of 2^(i/N) less i << 47.
const EXPF_TABLE: [u64; 32] = [
    0x3ff0_0000_0000_0000,
    0x3fef_d9b0_d315_8574,
    0x3fef_b558_6cf9_890f,
    0x3fef_9301_d012_5b51,
    0x3fef_72b8_3c7d_517b,
    0x3fef_5487_3168_b9aa,
    0x3fef_387a_6e75_6238,
    0x3fef_1e9d_f51f_dee1,
    0x3fef_06fe_0a31_b715,
    0x3fee_f1a7_373a_a9cb,
    0x3fee_dea6_4c12_3422,
    0x3fee_ce08_6061_892d,
    0x3fee_bfda_d536_2a27,
    0x3fee_b42b_569d_4f82,
    0x3fee_ab07_dd48_5429,
    0x3fee_a47e_b03a_5585,
    0x3fee_a09e_667f_3bcd,
    0x3fee_9f75_e8ec_5f74,
    0x3fee_a114_73eb_0187,
    0x3fee_a589_994c_ce13,
    0x3fee_ace5_422a_a0db,
    0x3fee_b737_b0cd_c5e5,
    0x3fee_c491_82a3_f090,
    0x3fee_d503_b23e_255d,
    0x3fee_e89f_995a_d3ad,
    0x3fee_ff76_f2fb_5e47,
    0x3fef_199b_dd85_529c,
    0x3fef_3720_dcef_9069,
    0x3fef_5818_dcfb_a487,
    0x3fef_7c97_337b_9b5f,
    0x3fef_a4af_a2a4_90da,
    0x3fef_d076_5b6e_4540,
];

/// e^x, as glibc's `__exp_fma`.
#[inline(always)]
fn exp_scalar(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut abstop = (bits >> 52) as u32 & 0x7ff;
    // top12(2^-54) = 0x3c9, top12(512) = 0x408.
    if abstop.wrapping_sub(0x3c9) >= 0x408 - 0x3c9 {
        if abstop < 0x3c9 {
            // |x| < 2^-54 (0 included): 1 + x rounds to 1 (nearest), as glibc returns it.
            return 1.0 + x;
        }
        if abstop >= 0x409 {
            // |x| >= 1024, infinities and NaN.
            if bits == f64::NEG_INFINITY.to_bits() {
                return 0.0;
            }
            if abstop >= 0x7ff {
                return 1.0 + x;
            }
            return if bits >> 63 != 0 { 0.0 } else { f64::INFINITY };
        }
        // 512 <= |x| < 1024: the result may leave the normal range; scaled below.
        abstop = 0;
    }
    let (tmp, sbits, ki) = exp_core(x);
    if abstop == 0 {
        return exp_special(tmp, sbits, ki);
    }
    let scale = f64::from_bits(sbits);
    scale.mul_add(tmp, scale)
}

/// The main path of [`exp_scalar`]: x = k ln2/N + r, 2^(k/N) = scale (1 + tail), and
/// e^x ~ scale + scale tmp; returns (tmp, the bits of scale, k's bits).
#[inline(always)]
fn exp_core(x: f64) -> (f64, u64, u64) {
    let shifted = x.mul_add(INV_LN2_N, SHIFT);
    let ki = shifted.to_bits();
    let kd = shifted - SHIFT;
    let r = kd.mul_add(NEG_LN2_LO_N, kd.mul_add(NEG_LN2_HI_N, x));
    let idx = 2 * (ki % (1 << EXP_TABLE_BITS)) as usize;
    let top = ki << (52 - EXP_TABLE_BITS);
    let tail = f64::from_bits(EXP_TABLE[idx]);
    let sbits = EXP_TABLE[idx + 1].wrapping_add(top);
    let r2 = r * r;
    let tmp = (r2 * r2).mul_add(r.mul_add(C5, C4), r.mul_add(C3, C2).mul_add(r2, r + tail));
    (tmp, sbits, ki)
}

/// e^x for 512 <= |x| < 1024 from [`exp_core`]'s parts: the scale, which may not be a normal
/// number, is applied in two steps (glibc's `specialcase`).
#[cold]
fn exp_special(tmp: f64, sbits: u64, ki: u64) -> f64 {
    if ki & 0x8000_0000 == 0 {
        // k > 0: 2^1009 (2^(k/N) 2^-1009 (1 + tmp)).
        let scale = f64::from_bits(sbits.wrapping_sub(1009 << 52));
        return scale.mul_add(tmp, scale) * f64::from_bits(0x7f00_0000_0000_0000);
    }
    // k < 0: 2^-1022 (2^(k/N) 2^1022 (1 + tmp)), rounded once in the subnormal range.
    let scale = f64::from_bits(sbits.wrapping_add(1022 << 52));
    let product = scale * tmp;
    let mut y = scale + product;
    if y < 1.0 {
        let lo = scale - y + product;
        let hi = 1.0 + y;
        let lo = 1.0 - hi + y + lo;
        y = (lo + hi) - 1.0;
        if y == 0.0 {
            y = 0.0;
        }
    }
    y * f64::from_bits(0x0010_0000_0000_0000)
}

/// e^x in f32, as glibc's `__expf_fma`.
#[inline(always)]
fn expf_scalar(x: f32) -> f32 {
    let bits = x.to_bits();
    // top12(88.0) = 0x42b.
    if (bits >> 20) & 0x7ff >= 0x42b {
        if bits == f32::NEG_INFINITY.to_bits() {
            return 0.0;
        }
        if (bits >> 20) & 0x7ff >= 0x7f8 {
            return x + x;
        }
        if x > f32::from_bits(0x42b1_7217) {
            // x > ln(2^128).
            return f32::INFINITY;
        }
        if x < f32::from_bits(0xc2cf_f1b4) {
            // x < ln(2^-150).
            return 0.0;
        }
        if x < f32::from_bits(0xc2ce_8ecf) {
            // x < ln(2^-149): glibc's __math_may_uflowf, 0x1.4p-75 squared.
            let tiny = f32::from_bits(0x1a20_0000);
            return std::hint::black_box(tiny) * tiny;
        }
    }
    expf_core(x as f64) as f32
}

/// The main path of [`expf_scalar`], before the final rounding to f32.
#[inline(always)]
fn expf_core(x: f64) -> f64 {
    let shifted = F_INV_LN2_N.mul_add(x, SHIFT);
    let ki = shifted.to_bits();
    let kd = shifted - SHIFT;
    // r = x N/ln2 - k with one rounding.
    let r = F_INV_LN2_N.mul_add(x, -kd);
    let t = EXPF_TABLE[(ki % (1 << EXPF_TABLE_BITS)) as usize]
        .wrapping_add(ki << (52 - EXPF_TABLE_BITS));
    let s = f64::from_bits(t);
    let z = r.mul_add(F0, F1);
    let r2 = r * r;
    let y = r.mul_add(F2, 1.0);
    z.mul_add(r2, y) * s
}

/// e^v for every v of `values`, in place: [`exp_scalar`]'s bits for each.
pub fn exp_in_place(values: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is available (checked above).
            unsafe { avx512::exp_in_place(values) };
            return;
        }
        if std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: FMA is available (checked above).
            unsafe { fma::exp_in_place(values) };
            return;
        }
    }
    for v in values {
        *v = exp_scalar(*v);
    }
}

/// e^v for every v of `values`, in place: [`expf_scalar`]'s bits for each.
pub fn expf_in_place(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is available (checked above).
            unsafe { avx512::expf_in_place(values) };
            return;
        }
        if std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: FMA is available (checked above).
            unsafe { fma::expf_in_place(values) };
            return;
        }
    }
    for v in values {
        *v = expf_scalar(*v);
    }
}

/// The scalar functions compiled with FMA instructions (without, each `mul_add` is a call).
#[cfg(target_arch = "x86_64")]
mod fma {
    use super::{exp_scalar, expf_scalar};

    #[target_feature(enable = "fma")]
    pub(super) fn exp(x: f64) -> f64 {
        exp_scalar(x)
    }

    #[target_feature(enable = "fma")]
    pub(super) fn exp_in_place(values: &mut [f64]) {
        for v in values {
            *v = exp_scalar(*v);
        }
    }

    #[target_feature(enable = "fma")]
    pub(super) fn expf_in_place(values: &mut [f32]) {
        for v in values {
            *v = expf_scalar(*v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    /// [`exp_core`]'s result on 8 lanes, and the lanes that need [`exp_scalar`] instead.
    #[target_feature(enable = "avx512f")]
    fn exp8(x: __m512d) -> (__m512d, __mmask8) {
        let splat = _mm512_set1_pd;
        let abstop = _mm512_and_si512(
            _mm512_srli_epi64::<52>(_mm512_castpd_si512(x)),
            _mm512_set1_epi64(0x7ff),
        );
        let special = _mm512_cmpge_epu64_mask(
            _mm512_sub_epi64(abstop, _mm512_set1_epi64(0x3c9)),
            _mm512_set1_epi64(0x408 - 0x3c9),
        );
        let shifted = _mm512_fmadd_pd(x, splat(INV_LN2_N), splat(SHIFT));
        let ki = _mm512_castpd_si512(shifted);
        let kd = _mm512_sub_pd(shifted, splat(SHIFT));
        let r = _mm512_fmadd_pd(
            kd,
            splat(NEG_LN2_LO_N),
            _mm512_fmadd_pd(kd, splat(NEG_LN2_HI_N), x),
        );
        let idx = _mm512_slli_epi64::<1>(_mm512_and_si512(
            ki,
            _mm512_set1_epi64((1 << EXP_TABLE_BITS) - 1),
        ));
        // SAFETY: every index is at most 2 * 127 + 1 < 256, inside the table.
        let (tail, scale_bits) = unsafe {
            (
                _mm512_i64gather_pd::<8>(idx, EXP_TABLE.as_ptr().cast()),
                _mm512_i64gather_epi64::<8>(
                    _mm512_add_epi64(idx, _mm512_set1_epi64(1)),
                    EXP_TABLE.as_ptr().cast(),
                ),
            )
        };
        let scale = _mm512_castsi512_pd(_mm512_add_epi64(
            scale_bits,
            _mm512_slli_epi64::<{ 52 - EXP_TABLE_BITS }>(ki),
        ));
        let r2 = _mm512_mul_pd(r, r);
        let tmp = _mm512_fmadd_pd(
            _mm512_mul_pd(r2, r2),
            _mm512_fmadd_pd(r, splat(C5), splat(C4)),
            _mm512_fmadd_pd(
                _mm512_fmadd_pd(r, splat(C3), splat(C2)),
                r2,
                _mm512_add_pd(r, tail),
            ),
        );
        (_mm512_fmadd_pd(scale, tmp, scale), special)
    }

    /// [`expf_core`] on 8 lanes rounded to f32, and the lanes that need [`expf_scalar`].
    #[target_feature(enable = "avx512f")]
    fn expf8(x: __m256) -> (__m256, __mmask8) {
        let splat = _mm512_set1_pd;
        let abstop = _mm512_and_si512(
            _mm512_srli_epi64::<20>(_mm512_cvtepu32_epi64(_mm256_castps_si256(x))),
            _mm512_set1_epi64(0x7ff),
        );
        let special = _mm512_cmpge_epu64_mask(abstop, _mm512_set1_epi64(0x42b));
        let xd = _mm512_cvtps_pd(x);
        let shifted = _mm512_fmadd_pd(splat(F_INV_LN2_N), xd, splat(SHIFT));
        let ki = _mm512_castpd_si512(shifted);
        let kd = _mm512_sub_pd(shifted, splat(SHIFT));
        let r = _mm512_fmsub_pd(splat(F_INV_LN2_N), xd, kd);
        let idx = _mm512_and_si512(ki, _mm512_set1_epi64((1 << EXPF_TABLE_BITS) - 1));
        // SAFETY: every index is at most 31, inside the table.
        let t = unsafe { _mm512_i64gather_epi64::<8>(idx, EXPF_TABLE.as_ptr().cast()) };
        let s = _mm512_castsi512_pd(_mm512_add_epi64(
            t,
            _mm512_slli_epi64::<{ 52 - EXPF_TABLE_BITS }>(ki),
        ));
        let z = _mm512_fmadd_pd(r, splat(F0), splat(F1));
        let r2 = _mm512_mul_pd(r, r);
        let y = _mm512_fmadd_pd(r, splat(F2), splat(1.0));
        let y = _mm512_mul_pd(_mm512_fmadd_pd(z, r2, y), s);
        (_mm512_cvtpd_ps(y), special)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn exp_in_place(values: &mut [f64]) {
        by_eight(values, 1.0, exp_scalar, |input, out| {
            // SAFETY: AVX-512F is enabled here; both arrays hold 8 lanes.
            unsafe {
                let (y, special) = exp8(_mm512_loadu_pd(input.as_ptr()));
                _mm512_storeu_pd(out.as_mut_ptr(), y);
                special
            }
        });
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn expf_in_place(values: &mut [f32]) {
        by_eight(values, 1.0, expf_scalar, |input, out| {
            // SAFETY: AVX-512F is enabled here; both arrays hold 8 lanes.
            unsafe {
                let (y, special) = expf8(_mm256_loadu_ps(input.as_ptr()));
                _mm256_storeu_ps(out.as_mut_ptr(), y);
                special
            }
        });
    }

    /// `values` through `lanes` eight at a time (a last, shorter block padded with `pad`, a
    /// value on the main path); the lanes it flags are recomputed by `scalar`.
    #[inline(always)]
    fn by_eight<T: Copy>(
        values: &mut [T],
        pad: T,
        scalar: fn(T) -> T,
        lanes: impl Fn(&[T; 8], &mut [T; 8]) -> u8,
    ) {
        // Whole blocks as arrays (fixed-size copies, no memcpy calls), then the rest.
        let mut blocks = values.chunks_exact_mut(8);
        for block in &mut blocks {
            let block: &mut [T; 8] = block.try_into().expect("blocks of 8");
            let input = *block;
            let special = lanes(&input, block);
            rescalar(special, block, &input, scalar);
        }
        let rest = blocks.into_remainder();
        if !rest.is_empty() {
            let mut input = [pad; 8];
            input[..rest.len()].copy_from_slice(rest);
            let mut out = input;
            let special = lanes(&input, &mut out);
            rescalar(special, &mut out, &input, scalar);
            rest.copy_from_slice(&out[..rest.len()]);
        }
    }

    /// The lanes set in `special` recomputed from `input` by `scalar`.
    #[inline(always)]
    fn rescalar<T: Copy>(special: u8, out: &mut [T; 8], input: &[T; 8], scalar: fn(T) -> T) {
        let mut lanes = special;
        while lanes != 0 {
            let lane = lanes.trailing_zeros() as usize;
            out[lane] = scalar(input[lane]);
            lanes &= lanes - 1;
        }
    }
}

/// e^x, one value: [`exp_scalar`]'s bits, with FMA instructions where the CPU has them.
pub fn exp(x: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: FMA is available (checked above).
        return unsafe { fma::exp(x) };
    }
    exp_scalar(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// e^x in f32 through [`expf_in_place`] (one value: the padded last block).
    fn expf(x: f32) -> f32 {
        let mut value = [x];
        expf_in_place(&mut value);
        value[0]
    }

    /// Distance in units in the last place between two finite values of the same sign.
    fn ulps(a: f64, b: f64) -> u64 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    /// Arguments over the whole range of `exp`: a dense sweep, the edges of each case, and
    /// values that are not numbers.
    fn exp_arguments() -> Vec<f64> {
        let mut x: Vec<f64> = (0..400_001)
            .map(|i| -760.0 + 1480.0 * i as f64 / 400_000.0)
            .collect();
        // Small and tiny arguments, both signs, and the subnormal results near -745.
        for e in -1074..10 {
            let v = 2f64.powi(e);
            x.extend([v, -v, v * 1.37, -v * 1.37]);
        }
        x.extend((0..20_000).map(|i| -708.0 - 37.2 * i as f64 / 20_000.0));
        x.extend([
            0.0,
            -0.0,
            1.0,
            512.0,
            -512.0,
            1024.0,
            -1024.0,
            709.782712893384,
            709.7827128933841,
            -745.1332191019411,
            -745.1332191019412,
            f64::MAX,
            f64::MIN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ]);
        x
    }

    fn expf_arguments() -> Vec<f32> {
        // Every 4099th bit pattern (~1M values of each sign and size), and the edges.
        let mut x: Vec<f32> = (0..=u32::MAX / 4099)
            .map(|i| f32::from_bits(i * 4099))
            .collect();
        x.extend([
            0.0,
            -0.0,
            1.0,
            88.0,
            -88.0,
            88.72283,
            88.72284,
            -103.28,
            -103.97,
            -104.0,
            f32::MIN_POSITIVE,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ]);
        x
    }

    #[test]
    fn the_tables_hold_powers_of_two() {
        // Against exp2 from the platform's libm: an independent computation.
        for i in 0..128u64 {
            let high = f64::from_bits(EXP_TABLE[2 * i as usize + 1] + (i << 45));
            let tail = f64::from_bits(EXP_TABLE[2 * i as usize]);
            let exact = (i as f64 / 128.0).exp2();
            assert!(ulps(high, exact) <= 1, "2^({i}/128): {high} vs {exact}");
            assert!(tail.abs() < 1e-16, "tail {i}: {tail}");
        }
        for i in 0..32u64 {
            let value = f64::from_bits(EXPF_TABLE[i as usize] + (i << 47));
            let exact = (i as f64 / 32.0).exp2();
            assert!(ulps(value, exact) <= 1, "2^({i}/32): {value} vs {exact}");
        }
    }

    #[test]
    fn exp_is_within_an_ulp_of_the_platform_libm() {
        assert_eq!(exp(1.0), std::f64::consts::E);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp(710.0), f64::INFINITY);
        assert_eq!(exp(-746.0), 0.0);
        assert!(exp(f64::NAN).is_nan());
        let mut subnormal = 0;
        for x in exp_arguments() {
            let (ours, libm) = (exp(x), x.exp());
            if libm.is_nan() {
                assert!(ours.is_nan(), "exp({x:e}) = {ours:e}, not NaN");
                continue;
            }
            subnormal += usize::from(libm != 0.0 && libm < f64::MIN_POSITIVE);
            assert!(
                ulps(ours, libm) <= 1,
                "exp({x:e}) = {ours:e}, libm {libm:e}"
            );
        }
        assert!(subnormal > 1000, "{subnormal} subnormal results");
    }

    #[test]
    fn expf_is_within_an_ulp_of_exp_in_double_precision() {
        assert_eq!(expf(1.0), std::f32::consts::E);
        assert_eq!(expf(0.0), 1.0);
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(89.0), f32::INFINITY);
        assert_eq!(expf(-104.0), 0.0);
        assert!(expf(f32::NAN).is_nan());
        for x in expf_arguments() {
            let (ours, reference) = (expf(x), (x as f64).exp() as f32);
            if reference.is_nan() {
                assert!(ours.is_nan(), "expf({x:e}) = {ours:e}, not NaN");
                continue;
            }
            assert!(
                (ours.to_bits() as i64 - reference.to_bits() as i64).abs() <= 1,
                "expf({x:e}) = {ours:e}, exp in f64 {reference:e}"
            );
        }
    }

    /// glibc's results (`__exp_fma`, Debian 12, glibc 2.36): where computing its polynomial or
    /// its last step without fused multiply-adds changes the result (the fusions in k and r
    /// changed none of 3 x 10^8 arguments); for 512 <= |x| < 1024, where the scale is applied
    /// in two steps (a fused last step when x > 0, the rounding in the subnormal range when
    /// x < 0; six results subnormal). And `expf` where glibc is not correctly
    /// rounded (0x3f80e15d would be).
    #[test]
    fn the_results_are_glibcs_where_its_fused_operations_matter() {
        let golden: [(u64, u64); 22] = [
            (0xc023_2153_a7f7_4f8a, 0x3f12_62aa_ca05_cfce),
            (0xc033_7743_52d9_0f62, 0x3e2e_3450_3cd0_5994),
            (0x3fdd_8087_783e_4e98, 0x3ff9_5ea9_99d0_d33e),
            (0xc06d_be1a_6ef3_dda6, 0x2a7a_6e07_4461_9697),
            (0xbfd5_e126_b205_4564, 0x3fe6_bbf2_19a3_683d),
            (0xc075_fb3c_8385_46c3, 0x2038_4422_bc03_2905),
            (0xbfe7_a903_6766_beec, 0x3fde_8dde_e4ac_f32f),
            (0xc02d_4535_39eb_0746, 0x3e9d_911f_6056_3413),
            (0x404a_2a76_2381_4290, 0x44a6_9b83_4efa_9e89),
            (0xbfed_3e39_9ec8_30d4, 0x3fd9_a9a4_7996_3e31),
            // 512 <= |x| < 1024.
            (0x4084_b965_ca3e_2272, 0x7bbb_1307_abb0_50d7),
            (0x4080_5e02_e76b_40ec, 0x6f28_7b0f_a5a9_5de3),
            (0x4084_6360_d635_4362, 0x7ac2_fad4_5555_7453),
            (0xc086_287b_b44d_3d79, 0x0008_3c9b_0fcb_eb41),
            (0xc086_3383_64e1_24ce, 0x0002_1324_15cc_5eb1),
            (0xc086_249e_36ab_a1e9, 0x000d_5a69_fd44_c1d9),
            (0xc082_ccf5_5711_6ae4, 0x09b0_8503_559b_cd4e),
            (0xc080_9ee7_3d70_247a, 0x0ff9_b4a9_916f_e65e),
            (0xc085_ba63_a054_3ae4, 0x013d_c6ba_c817_0536),
            (0xc086_e4d3_44a9_a83b, 0x0000_0000_0002_1c17),
            (0xc086_5d4e_e12b_3e48, 0x0000_02dc_0c68_a907),
            (0xc086_7f80_7688_dfbe, 0x0000_000a_313c_ed1d),
        ];
        for (x, y) in golden {
            let x = f64::from_bits(x);
            assert_eq!(exp(x).to_bits(), y, "exp({x:e})");
            assert_eq!(exp_scalar(x).to_bits(), y, "exp({x:e}), scalar");
        }
        assert_eq!(expf(f32::from_bits(0x3be0_9802)).to_bits(), 0x3f80_e15e);
    }

    /// The FMA build of the scalar code and the AVX-512 lanes, each called directly (dispatch
    /// picks only one of them on a given machine), give the scalar algorithm's bits.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_path_the_machine_has_gives_the_scalar_bits() {
        let (x, x32) = (exp_arguments(), expf_arguments());
        let check = |path: &str, run: &dyn Fn(&mut [f64]), run32: &dyn Fn(&mut [f32])| {
            let mut y = x.clone();
            run(&mut y);
            for (&v, &y) in x.iter().zip(&y) {
                assert_eq!(y.to_bits(), exp_scalar(v).to_bits(), "{path}: exp({v:e})");
            }
            let mut y = x32.clone();
            run32(&mut y);
            for (&v, &y) in x32.iter().zip(&y) {
                assert_eq!(y.to_bits(), expf_scalar(v).to_bits(), "{path}: expf({v:e})");
            }
        };
        if std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: FMA is available (checked above).
            check("fma", &|v| unsafe { fma::exp_in_place(v) }, &|v| unsafe {
                fma::expf_in_place(v)
            });
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is available (checked above).
            check(
                "avx512",
                &|v| unsafe { avx512::exp_in_place(v) },
                &|v| unsafe { avx512::expf_in_place(v) },
            );
        }
    }

    /// Whatever path the machine takes (AVX-512 lanes, FMA, plain), each value's result is the
    /// scalar algorithm's, at every position of a slice and every slice length.
    #[test]
    fn slices_give_the_scalar_bits_at_every_position() {
        let x = exp_arguments();
        let mut fast = x.clone();
        exp_in_place(&mut fast);
        for (&v, &y) in x.iter().zip(&fast) {
            assert_eq!(y.to_bits(), exp_scalar(v).to_bits(), "exp({v:e})");
        }
        let x = expf_arguments();
        let mut fast = x.clone();
        expf_in_place(&mut fast);
        for (&v, &y) in x.iter().zip(&fast) {
            assert_eq!(y.to_bits(), expf_scalar(v).to_bits(), "expf({v:e})");
        }
        // Every length 0..=19 and offset, special lanes among ordinary ones.
        let mixed = [
            0.5,
            -1e-300,
            700.0,
            -600.0,
            f64::NAN,
            3.0,
            -2.0,
            0.0,
            800.0,
            -0.25,
            1e3,
            -7.5,
            f64::NEG_INFINITY,
            12.0,
            -745.0,
            88.0,
            1.0,
            -103.5,
            2.5,
        ];
        for start in 0..mixed.len() {
            for end in start..=mixed.len() {
                let mut fast = mixed[start..end].to_vec();
                exp_in_place(&mut fast);
                let mut fast32: Vec<f32> = mixed[start..end].iter().map(|&v| v as f32).collect();
                expf_in_place(&mut fast32);
                for (i, &v) in mixed[start..end].iter().enumerate() {
                    assert_eq!(fast[i].to_bits(), exp_scalar(v).to_bits(), "exp({v:e})");
                    assert_eq!(
                        fast32[i].to_bits(),
                        expf_scalar(v as f32).to_bits(),
                        "expf({v:e})"
                    );
                }
            }
        }
    }
}
