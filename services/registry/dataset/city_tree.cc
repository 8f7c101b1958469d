#include "services/registry/dataset/city_tree.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/split_mix.h"

namespace dangjian::registry::dataset {
namespace {

using registry::v1::ImportOrgRow;
using registry::v1::OrgDomain;
using registry::v1::OrgKind;

using Rng = SplitMix64;

// 1..99 in Chinese numerals (第三, 第十二); larger numbers in digits, as documents write them.
std::string ChineseNumber(int n) {
  static constexpr const char* kDigits[] = {"零", "一", "二", "三", "四",
                                            "五", "六", "七", "八", "九"};
  if (n <= 0 || n >= 100) return absl::StrCat(n);
  if (n < 10) return kDigits[n];
  std::string text = n / 10 == 1 ? "" : kDigits[n / 10];
  text += "十";
  if (n % 10 != 0) text += kDigits[n % 10];
  return text;
}

// What kind of unit a district-level committee oversees; it decides the shape below it.
enum class Sector {
  kUrbanDistrict,     // streets (街道): community heavy
  kSuburbanDistrict,  // towns (镇) and some streets: village heavy
  kCityAgencies,      // 市级机关工委: agency committees
  kStateEnterprises,  // 国资委党委: enterprise group committees
  kEducation,         // 教育工委: college and school committees
};

struct TopUnit {
  const char* name;        // the committee's name
  const char* short_name;  // prefix of the names below it
  const char* region_code;
  Sector sector;
  OrgDomain domain;
  int weight;  // share of the city's orgs under it
};

constexpr char kCityRegion[] = "320100";

// Nanjing's eleven districts and three city-level working committees.
constexpr TopUnit kTopUnits[] = {
    {"中共南京市玄武区委员会", "玄武区", "320102", Sector::kUrbanDistrict,
     registry::v1::ORG_DOMAIN_OTHER, 8},
    {"中共南京市秦淮区委员会", "秦淮区", "320104", Sector::kUrbanDistrict,
     registry::v1::ORG_DOMAIN_OTHER, 9},
    {"中共南京市建邺区委员会", "建邺区", "320105", Sector::kUrbanDistrict,
     registry::v1::ORG_DOMAIN_OTHER, 7},
    {"中共南京市鼓楼区委员会", "鼓楼区", "320106", Sector::kUrbanDistrict,
     registry::v1::ORG_DOMAIN_OTHER, 11},
    {"中共南京市浦口区委员会", "浦口区", "320111", Sector::kSuburbanDistrict,
     registry::v1::ORG_DOMAIN_OTHER, 9},
    {"中共南京市栖霞区委员会", "栖霞区", "320113", Sector::kUrbanDistrict,
     registry::v1::ORG_DOMAIN_OTHER, 10},
    {"中共南京市雨花台区委员会", "雨花台区", "320114", Sector::kUrbanDistrict,
     registry::v1::ORG_DOMAIN_OTHER, 7},
    {"中共南京市江宁区委员会", "江宁区", "320115", Sector::kSuburbanDistrict,
     registry::v1::ORG_DOMAIN_OTHER, 16},
    {"中共南京市六合区委员会", "六合区", "320116", Sector::kSuburbanDistrict,
     registry::v1::ORG_DOMAIN_OTHER, 10},
    {"中共南京市溧水区委员会", "溧水区", "320117", Sector::kSuburbanDistrict,
     registry::v1::ORG_DOMAIN_OTHER, 7},
    {"中共南京市高淳区委员会", "高淳区", "320118", Sector::kSuburbanDistrict,
     registry::v1::ORG_DOMAIN_OTHER, 6},
    {"中共南京市级机关工作委员会", "南京市", kCityRegion, Sector::kCityAgencies,
     registry::v1::ORG_DOMAIN_GOVERNMENT_AGENCY, 6},
    {"中共南京市人民政府国有资产监督管理委员会委员会", "南京", kCityRegion,
     Sector::kStateEnterprises, registry::v1::ORG_DOMAIN_STATE_ENTERPRISE, 6},
    {"中共南京市委教育工作委员会", "南京", kCityRegion, Sector::kEducation,
     registry::v1::ORG_DOMAIN_SCHOOL, 5},
};

constexpr const char* kPlaces[] = {
    "红山",   "梅园",   "孝陵卫", "锁金村", "玄武门", "新街口", "夫子庙", "秦虹",   "中华门",
    "双塘",   "朝天宫", "五老村", "月牙湖", "光华路", "红花",   "兴隆",   "沙洲",   "南苑",
    "双闸",   "江心洲", "莫愁湖", "华侨路", "湖南路", "宁海路", "江东",   "凤凰",   "幕府山",
    "建宁路", "小市",   "尧化",   "马群",   "仙林",   "迈皋桥", "燕子矶", "八卦洲", "龙潭",
    "西岗",   "铁心桥", "西善桥", "板桥",   "梅山",   "赛虹桥", "东山",   "秣陵",   "汤山",
    "淳化",   "禄口",   "谷里",   "横溪",   "湖熟",   "麒麟",   "泰山",   "顶山",   "沿江",
    "江浦",   "桥林",   "汤泉",   "星甸",   "永宁",   "雄州",   "龙池",   "程桥",   "竹镇",
    "马鞍",   "冶山",   "横梁",   "永阳",   "白马",   "东屏",   "石湫",   "洪蓝",   "和凤",
    "淳溪",   "古柏",   "阳江",   "砖墙",   "漆桥",   "桠溪",   "东坝",   "固城"};

// Community and village names are two characters: 梅苑, 新村, 龙塘 ...
constexpr const char* kNameHeads[] = {"红", "梅", "桃", "新", "东", "西", "南", "北", "金", "银",
                                      "龙", "凤", "天", "月", "星", "和", "安", "康", "富", "丰",
                                      "青", "翠", "华", "瑞", "永", "福", "长", "清", "春", "秀"};
constexpr const char* kNameTails[] = {"山", "园", "苑", "村", "庄", "桥", "湖", "河", "塘", "岗",
                                      "门", "坊", "街", "里", "城", "林", "港", "湾", "营", "巷"};

constexpr const char* kAgencies[] = {"财政局",
                                     "教育局",
                                     "民政局",
                                     "司法局",
                                     "人力资源和社会保障局",
                                     "住房和城乡建设局",
                                     "卫生健康委员会",
                                     "市场监督管理局",
                                     "城市管理局",
                                     "文化和旅游局",
                                     "统计局",
                                     "审计局",
                                     "应急管理局",
                                     "医疗保障局",
                                     "信访局",
                                     "商务局",
                                     "水务局",
                                     "农业农村局",
                                     "交通运输局",
                                     "发展和改革委员会",
                                     "科学技术局",
                                     "工业和信息化局",
                                     "生态环境局",
                                     "退役军人事务局",
                                     "体育局"};
constexpr const char* kAgencyDepartments[] = {"办公室", "政策法规处", "综合处",     "财务处",
                                              "人事处", "信息中心",   "执法监督处", "规划处"};
constexpr const char* kInstitutions[] = {
    "人民医院", "中医院",     "妇幼保健院", "疾病预防控制中心", "图书馆",
    "文化馆",   "社会福利院", "城建档案馆", "广播电视台",       "公共资源交易中心"};
constexpr const char* kBrands[] = {"金陵", "紫金", "钟山", "石城", "江南", "长江", "鼎新",
                                   "华瑞", "中盛", "恒通", "博远", "智联", "新创", "同方",
                                   "瑞祥", "德润", "天和", "汇源", "苏建", "宁辉"};
constexpr const char* kIndustries[] = {"科技",     "电子",     "物流",     "建设工程",
                                       "餐饮管理", "医药",     "软件",     "新材料",
                                       "商贸",     "文化传媒", "环保科技", "智能制造"};
constexpr const char* kCompanyDepartments[] = {"综合管理部", "研发中心", "生产车间",   "销售部",
                                               "财务部",     "技术部",   "第一项目部", "第二项目部",
                                               "客服中心",   "质量部"};
constexpr const char* kGroupBusinesses[] = {"城建", "交通",     "地铁",     "旅游",     "水务",
                                            "燃气", "新工投资", "安居建设", "公用控股", "农业发展"};
constexpr const char* kSocialKinds[] = {"商会",       "行业协会",         "律师协会",
                                        "志愿者协会", "社会工作服务中心", "物业管理协会"};

// Builds the tree depth-first so rows come out parents first. Every function takes a budget of
// rows and spends exactly that many, so the tree has exactly the size asked for.
class TreeBuilder {
 public:
  explicit TreeBuilder(uint64_t seed) : rng_(seed) {}

  std::vector<ImportOrgRow> Build(int org_count) {
    rows_.clear();
    if (org_count < 1) return std::move(rows_);
    rows_.reserve(static_cast<size_t>(org_count));
    const std::string city_code = "C0001";
    Add(city_code, "", "中共南京市委员会", registry::v1::ORG_KIND_COMMITTEE,
        registry::v1::ORG_DOMAIN_OTHER, kCityRegion, /*min_year=*/0);
    const int top_count = std::min<int>(std::size(kTopUnits), org_count - 1);
    int weight_sum = 0;
    for (int i = 0; i < top_count; ++i) weight_sum += kTopUnits[i].weight;
    // Each top unit gets its row plus a share of the rest by weight; the rounding leftovers go
    // to the first units, one each.
    const int rest = org_count - 1 - top_count;
    std::vector<int> budgets(static_cast<size_t>(top_count), 1);
    int given = 0;
    for (int i = 0; i < top_count; ++i) {
      const int share = static_cast<int>(static_cast<int64_t>(rest) * kTopUnits[i].weight /
                                         std::max(weight_sum, 1));
      budgets[static_cast<size_t>(i)] += share;
      given += share;
    }
    for (int i = 0; given < rest; i = (i + 1) % top_count, ++given) {
      ++budgets[static_cast<size_t>(i)];
    }
    for (int i = 0; i < top_count; ++i) {
      BuildTopUnit(kTopUnits[i], absl::StrFormat("%s-%02d", city_code, i + 1), city_code,
                   budgets[static_cast<size_t>(i)]);
    }
    return std::move(rows_);
  }

 private:
  // Adds one row and returns the year it was set up (kept even when the date is left empty, so
  // children are never older than their parent).
  int Add(const std::string& code, const std::string& parent_code, const std::string& name,
          OrgKind kind, OrgDomain domain, const char* region_code, int min_year,
          bool joint = false) {
    ImportOrgRow& row = rows_.emplace_back();
    row.set_code(code);
    row.set_parent_code(parent_code);
    row.set_name(name);
    row.set_kind(kind);
    row.set_joint(joint);
    row.set_domain(domain);
    row.set_region_code(region_code);
    int year = 1949;
    if (min_year == 0) {
      row.mutable_established_date()->set_year(1949);
      row.mutable_established_date()->set_month(4);
      row.mutable_established_date()->set_day(24);
      return year;
    }
    year = rng_.Uniform(std::max(min_year, 1978), 2023);
    // Older registrations often lack the date; the registry accepts an empty one.
    if ((kind == registry::v1::ORG_KIND_BRANCH || kind == registry::v1::ORG_KIND_GROUP) &&
        rng_.Percent(8)) {
      return year;
    }
    row.mutable_established_date()->set_year(year);
    row.mutable_established_date()->set_month(rng_.Uniform(1, 12));
    row.mutable_established_date()->set_day(rng_.Uniform(1, 28));
    return year;
  }

  std::string TwoCharName() { return absl::StrCat(rng_.Pick(kNameHeads), rng_.Pick(kNameTails)); }

  void BuildTopUnit(const TopUnit& top, const std::string& code, const std::string& parent_code,
                    int budget) {
    const int year = Add(code, parent_code, top.name, registry::v1::ORG_KIND_COMMITTEE, top.domain,
                         top.region_code, 1949);
    int remaining = budget - 1;
    for (int index = 1; remaining > 0; ++index) {
      const std::string child_code = absl::StrFormat("%s-%03d", code, index);
      switch (top.sector) {
        case Sector::kUrbanDistrict:
        case Sector::kSuburbanDistrict:
          remaining -= BuildDistrictUnit(top, child_code, code, year, remaining);
          break;
        case Sector::kCityAgencies:
        case Sector::kStateEnterprises:
        case Sector::kEducation:
          remaining -= BuildCityUnit(top, child_code, code, year, remaining);
          break;
      }
    }
  }

  // A street/town committee (about one unit in five, most of the district's orgs) or a general
  // branch of a district agency, institution, school, enterprise or social organisation.
  // Returns the rows spent.
  int BuildDistrictUnit(const TopUnit& district, const std::string& code,
                        const std::string& parent_code, int parent_year, int budget) {
    if (rng_.Percent(20)) {
      const int size = std::min(budget, rng_.Uniform(40, 110));
      const bool town = district.sector == Sector::kSuburbanDistrict && rng_.Percent(60);
      const std::string prefix =
          absl::StrCat(district.short_name, rng_.Pick(kPlaces), town ? "镇" : "街道");
      const int year =
          Add(code, parent_code, absl::StrCat(prefix, town ? "党委" : "党工委"),
              registry::v1::ORG_KIND_COMMITTEE,
              town ? registry::v1::ORG_DOMAIN_VILLAGE : registry::v1::ORG_DOMAIN_COMMUNITY,
              district.region_code, parent_year);
      BuildNeighbourhoodBranches(prefix, town, code, district.region_code, year, size - 1);
      return size;
    }
    const int size = std::min(budget, rng_.Uniform(3, 12));
    std::string unit;
    OrgDomain domain;
    const int pick = rng_.Uniform(0, 99);
    if (pick < 35) {
      unit = absl::StrCat(district.short_name, rng_.Pick(kAgencies), "机关");
      domain = registry::v1::ORG_DOMAIN_GOVERNMENT_AGENCY;
    } else if (pick < 50) {
      unit = absl::StrCat(district.short_name, rng_.Pick(kInstitutions));
      domain = registry::v1::ORG_DOMAIN_PUBLIC_INSTITUTION;
    } else if (pick < 65) {
      unit = rng_.Percent(50) ? absl::StrCat(district.short_name, "第",
                                             ChineseNumber(rng_.Uniform(1, 40)), "中学")
                              : absl::StrCat(district.short_name, rng_.Pick(kPlaces), "小学");
      domain = registry::v1::ORG_DOMAIN_SCHOOL;
    } else if (pick < 90) {
      unit = absl::StrCat(rng_.Pick(kBrands), rng_.Pick(kIndustries), "有限公司");
      domain = registry::v1::ORG_DOMAIN_NON_PUBLIC_ENTERPRISE;
    } else {
      unit = absl::StrCat(district.short_name, rng_.Pick(kIndustries), rng_.Pick(kSocialKinds));
      domain = registry::v1::ORG_DOMAIN_SOCIAL_ORGANIZATION;
    }
    const int year =
        Add(code, parent_code, absl::StrCat(unit, "党总支"), registry::v1::ORG_KIND_GENERAL_BRANCH,
            domain, district.region_code, parent_year);
    int remaining = size - 1;
    for (int n = 1; remaining > 0; ++n) {
      std::string name;
      if (domain == registry::v1::ORG_DOMAIN_NON_PUBLIC_ENTERPRISE) {
        name = absl::StrCat(unit, rng_.Pick(kCompanyDepartments), "党支部");
      } else if (remaining == 1 && n > 2 &&
                 domain != registry::v1::ORG_DOMAIN_SOCIAL_ORGANIZATION) {
        name = absl::StrCat(unit, "离退休党支部");
      } else {
        name = absl::StrCat(unit, "第", ChineseNumber(n), "党支部");
      }
      remaining -= AddBranch(absl::StrFormat("%s-%04d", code, n), code, name, domain,
                             district.region_code, year, remaining);
    }
    return size;
  }

  // The branches of a street or town: communities or villages with one to five branches each,
  // and the 两新 organisations, joint branches and offices of the area.
  void BuildNeighbourhoodBranches(const std::string& prefix, bool town, const std::string& code,
                                  const char* region_code, int year, int budget) {
    int remaining = budget;
    int index = 0;
    int enterprise_joint = 0;
    int social_joint = 0;
    int office = 0;
    while (remaining > 0) {
      const int pick = rng_.Uniform(0, 99);
      auto next_code = [&] { return absl::StrFormat("%s-%04d", code, ++index); };
      if (pick < 62) {
        // A community (社区) in a street, a village (村) in a town, with its branches.
        const bool village = town && rng_.Percent(85);
        const std::string place = absl::StrCat(prefix, TwoCharName(), village ? "村" : "社区");
        const OrgDomain domain =
            village ? registry::v1::ORG_DOMAIN_VILLAGE : registry::v1::ORG_DOMAIN_COMMUNITY;
        const int branches = rng_.Uniform(1, 5);
        for (int n = 1; n <= branches && remaining > 0; ++n) {
          const std::string name = branches == 1
                                       ? absl::StrCat(place, "党支部")
                                       : absl::StrCat(place, "第", ChineseNumber(n), "党支部");
          remaining -= AddBranch(next_code(), code, name, domain, region_code, year, remaining);
        }
      } else if (pick < 80) {
        const std::string name =
            absl::StrCat(rng_.Pick(kBrands), rng_.Pick(kIndustries), "有限公司党支部");
        remaining -=
            AddBranch(next_code(), code, name, registry::v1::ORG_DOMAIN_NON_PUBLIC_ENTERPRISE,
                      region_code, year, remaining);
      } else if (pick < 86) {
        // Units with fewer than 3 members join a joint branch ([branch-min-members]).
        const std::string name =
            absl::StrCat(prefix, "第", ChineseNumber(++enterprise_joint), "非公企业联合党支部");
        remaining -=
            AddBranch(next_code(), code, name, registry::v1::ORG_DOMAIN_NON_PUBLIC_ENTERPRISE,
                      region_code, year, remaining, /*joint=*/true);
      } else if (pick < 92) {
        const bool joint = rng_.Percent(50);
        const std::string name =
            joint ? absl::StrCat(prefix, "第", ChineseNumber(++social_joint), "社会组织联合党支部")
                  : absl::StrCat(prefix, TwoCharName(), rng_.Pick(kSocialKinds), "党支部");
        remaining -=
            AddBranch(next_code(), code, name, registry::v1::ORG_DOMAIN_SOCIAL_ORGANIZATION,
                      region_code, year, remaining, joint);
      } else if (pick < 98) {
        const std::string name = absl::StrCat(prefix, "机关第", ChineseNumber(++office), "党支部");
        remaining -= AddBranch(next_code(), code, name, registry::v1::ORG_DOMAIN_GOVERNMENT_AGENCY,
                               region_code, year, remaining);
      } else {
        const std::string name = absl::StrCat(prefix, "离退休干部党支部");
        remaining -= AddBranch(next_code(), code, name, registry::v1::ORG_DOMAIN_OTHER, region_code,
                               year, remaining);
      }
    }
  }

  // A committee under a city-level working committee: a city agency, an enterprise group, or a
  // college or school. Returns the rows spent.
  int BuildCityUnit(const TopUnit& top, const std::string& code, const std::string& parent_code,
                    int parent_year, int budget) {
    std::string unit;
    int size = 0;
    switch (top.sector) {
      case Sector::kCityAgencies:
        unit = absl::StrCat(top.short_name, rng_.Pick(kAgencies));
        size = rng_.Uniform(5, 25);
        break;
      case Sector::kStateEnterprises:
        unit = absl::StrCat(top.short_name, rng_.Pick(kBrands), rng_.Pick(kGroupBusinesses),
                            "集团有限公司");
        size = rng_.Uniform(8, 40);
        break;
      default:
        unit = rng_.Percent(40) ? absl::StrCat(top.short_name, rng_.Pick(kPlaces), "职业技术学院")
                                : absl::StrCat(top.short_name, "市第",
                                               ChineseNumber(rng_.Uniform(1, 99)), "中学");
        size = rng_.Uniform(6, 30);
        break;
    }
    size = std::min(size, budget);
    const int year =
        Add(code, parent_code,
            absl::StrCat(unit, top.sector == Sector::kCityAgencies ? "机关党委" : "党委"),
            registry::v1::ORG_KIND_COMMITTEE, top.domain, top.region_code, parent_year);
    int remaining = size - 1;
    for (int n = 1; remaining > 0; ++n) {
      std::string name;
      switch (top.sector) {
        case Sector::kCityAgencies:
          name = remaining == 1 && n > 3
                     ? absl::StrCat(unit, "离退休干部党支部")
                     : absl::StrCat(unit, rng_.Pick(kAgencyDepartments), "党支部");
          break;
        case Sector::kStateEnterprises:
          name = absl::StrCat(unit, rng_.Pick(kCompanyDepartments), "党支部");
          break;
        default:
          name = absl::StrCat(unit, rng_.Percent(70) ? "教工第" : "学生第", ChineseNumber(n),
                              "党支部");
          break;
      }
      remaining -= AddBranch(absl::StrFormat("%s-%04d", code, n), code, name, top.domain,
                             top.region_code, year, remaining);
    }
    return size;
  }

  // A branch and, for about one branch in seven, two to four groups ([group-split]). Spends at
  // most `budget` rows (at least 1) and returns how many.
  int AddBranch(const std::string& code, const std::string& parent_code, const std::string& name,
                OrgDomain domain, const char* region_code, int parent_year, int budget,
                bool joint = false) {
    const int year = Add(code, parent_code, name, registry::v1::ORG_KIND_BRANCH, domain,
                         region_code, parent_year, joint);
    int spent = 1;
    if (budget > 1 && rng_.Percent(15)) {
      const int groups = std::min(budget - 1, rng_.Uniform(2, 4));
      for (int g = 1; g <= groups; ++g) {
        Add(absl::StrFormat("%s-%02d", code, g), code,
            absl::StrCat(name, "第", ChineseNumber(g), "党小组"), registry::v1::ORG_KIND_GROUP,
            domain, region_code, year);
      }
      spent += groups;
    }
    return spent;
  }

  Rng rng_;
  std::vector<ImportOrgRow> rows_;
};

}  // namespace

std::vector<ImportOrgRow> GenerateCityTree(const CityTreeOptions& options) {
  return TreeBuilder(options.seed).Build(options.org_count);
}

}  // namespace dangjian::registry::dataset
