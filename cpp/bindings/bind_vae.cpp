// pybind11 glue for the VAE (varinf/vae.hpp, varinf/vae_trainer.hpp): VaeF32/VaeF64 and their
// trainers; AdamF32/AdamF64 (varinf/optim.hpp) go to the testing submodule.
#include "common.hpp"
#include "varinf/optim.hpp"
#include "varinf/vae.hpp"
#include "varinf/vae_trainer.hpp"

namespace varinf::bindings {

namespace {

Activation parse_activation(const std::string& s) {
  if (s == "relu") return Activation::kRelu;
  if (s == "tanh") return Activation::kTanh;
  if (s == "softplus") return Activation::kSoftplus;
  throw InvalidArgument("activation must be 'relu', 'tanh' or 'softplus', got '" + s + "'");
}

ObservationModel parse_likelihood(const std::string& s) {
  if (s == "bernoulli") return ObservationModel::kBernoulli;
  if (s == "gaussian") return ObservationModel::kGaussian;
  throw InvalidArgument("likelihood must be 'bernoulli' or 'gaussian', got '" + s + "'");
}

template <typename T>
const char* divergence_name(typename VaeTrainer<T>::Divergence why) {
  using D = typename VaeTrainer<T>::Divergence;
  switch (why) {
    case D::kNonFiniteLoss:
      return "nonfinite_loss";
    case D::kNonFiniteGradient:
      return "nonfinite_gradient";
    case D::kCollapse:
      return "collapse";
    case D::kNone:
      break;
  }
  return "none";
}

Objective parse_objective(const std::string& s) {
  if (s == "elbo") return Objective::kElbo;
  if (s == "iwae") return Objective::kIwae;
  throw InvalidArgument("objective must be 'elbo' or 'iwae', got '" + s + "'");
}

py::list layers(const std::vector<Dense>& net) {
  py::list out;
  for (const Dense& d : net) out.append(py::make_tuple(d.in, d.out, d.w, d.b));
  return out;
}

template <typename T>
void bind_dtype(py::module_ m, const std::string& suffix) {
  using V = Vae<T>;
  using Trainer = VaeTrainer<T>;
  py::class_<V> vae(m, ("Vae" + suffix).c_str());
  vae.attr("max_params") = V::kMaxParams;  // the largest parameter count the constructor accepts
  vae
      .def(py::init([](Index input_dim, Index latent_dim, std::vector<Index> encoder_hidden,
                       std::vector<Index> decoder_hidden, const std::string& activation,
                       const std::string& likelihood, bool learn_obs_logvar, double obs_logvar) {
             VaeConfig c;
             c.input_dim = input_dim;
             c.latent_dim = latent_dim;
             c.encoder_hidden = std::move(encoder_hidden);
             c.decoder_hidden = std::move(decoder_hidden);
             c.activation = parse_activation(activation);
             c.observation = parse_likelihood(likelihood);
             c.learn_obs_logvar = learn_obs_logvar;
             c.obs_logvar = obs_logvar;
             return std::make_unique<V>(std::move(c));
           }),
           py::arg("input_dim"), py::arg("latent_dim"), py::arg("encoder_hidden"),
           py::arg("decoder_hidden"), py::arg("activation"), py::arg("likelihood"),
           py::arg("learn_obs_logvar"), py::arg("obs_logvar"))
      .def("initialize", &V::initialize, py::arg("seed"))
      .def_property_readonly("num_params", &V::num_params)
      .def_property_readonly("encoder_layers", [](const V& v) { return layers(v.encoder()); })
      .def_property_readonly("decoder_layers", [](const V& v) { return layers(v.decoder()); })
      .def_property_readonly("obs_logvar_offset", &V::obs_logvar_offset)
      // The parameters as a writable numpy view [num_params] that keeps the model alive.
      .def_property_readonly("theta",
                             [](py::object self) {
                               V& v = self.cast<V&>();
                               return Array<T>({v.num_params()}, {Index(sizeof(T))}, v.theta().data(), self);
                             })
      .def(
          "loss_grad",
          [](const V& v, const Array<T>& X, const Array<T>& eps, Index k, double beta,
             const std::string& objective) {
            const Index B = X.shape(0);
            require_shape(X, B, v.config().input_dim, "X");
            require_shape(eps, B * k, v.config().latent_dim, "eps");
            const Objective obj = parse_objective(objective);
            Array<T> grad(v.num_params());  // [P]
            Array<T> values(B);             // [B]
            T loss;
            {
              NoGil nogil;
              VaeWorkspace<T> ws;
              loss = v.loss_grad(view(X), view(eps), k, static_cast<T>(beta), obj, T(1) / T(B),
                                 grad.mutable_data(), values.mutable_data(), ws);
            }
            return py::make_tuple(loss, grad, values);
          },
          py::arg("X").noconvert(), py::arg("eps").noconvert(), py::arg("k"), py::arg("beta"),
          py::arg("objective"),
          "Minibatch loss -mean_i L_i, its gradient [P] and L_i [B], for eps [B k, J] given.")
      .def(
          "encode",
          [](const V& v, const Array<T>& X) {
            const Index n = X.shape(0), J = v.config().latent_dim;
            require_shape(X, n, v.config().input_dim, "X");
            Array<T> mu({n, J}), logvar({n, J});
            {
              NoGil nogil;
              v.encode(view(X), as_matrix(mu), as_matrix(logvar));
            }
            return py::make_tuple(mu, logvar);
          },
          py::arg("X").noconvert())
      .def(
          "decode",
          [](const V& v, const Array<T>& Z, bool link) {
            const Index n = Z.shape(0);
            require_shape(Z, n, v.config().latent_dim, "Z");
            Array<T> out({n, v.config().input_dim});
            {
              NoGil nogil;
              v.decode(view(Z), as_matrix(out), link);
            }
            return out;
          },
          py::arg("Z").noconvert(), py::arg("link"))
      .def(
          "bound",
          [](const V& v, const Array<T>& X, Index k, const std::string& objective, std::uint64_t seed) {
            const Index n = X.shape(0);
            require_shape(X, n, v.config().input_dim, "X");
            require(k >= 1, "k must be >= 1");
            const Objective obj = parse_objective(objective);
            Array<T> out(n);
            auto o = as_vector(out);
            {
              NoGil nogil;
              v.bound(view(X), k, obj, seed, o);
            }
            return out;
          },
          py::arg("X").noconvert(), py::arg("k"), py::arg("objective"), py::arg("seed"));

  py::class_<Trainer>(m, ("VaeTrainer" + suffix).c_str())
      .def(py::init([](V& model, const Array<T>& X, Index batch_size, Index samples,
                       const std::string& objective, double beta, double warmup_steps,
                       double learning_rate, std::uint64_t seed) {
             require_shape(X, X.shape(0), model.config().input_dim, "X");
             TrainOptions o;
             o.batch_size = batch_size;
             o.samples = samples;
             o.objective = parse_objective(objective);
             o.beta = beta;
             o.warmup_steps = warmup_steps;
             o.adam.learning_rate = learning_rate;
             o.seed = seed;
             ThreadScope threads;
             return std::make_unique<Trainer>(model, X.data(), X.shape(0), o);
           }),
           py::arg("model"), py::arg("X").noconvert(), py::arg("batch_size"), py::arg("samples"),
           py::arg("objective"), py::arg("beta"), py::arg("warmup_steps"), py::arg("learning_rate"),
           py::arg("seed"), py::keep_alive<1, 2>(), py::keep_alive<1, 3>())
      .def(
          "run",
          [](Trainer& t, Index steps) {
            typename Trainer::Result r;
            {
              NoGil nogil;
              r = t.run(steps);
            }
            py::dict out;
            out["losses"] = copy_out(r.losses);
            out["epoch_end"] = r.epoch_end;
            out["diverged_step"] = r.diverged.step;
            out["divergence"] = divergence_name<T>(r.diverged.why);
            out["diverged_loss"] = r.diverged.loss;
            return out;
          },
          py::arg("steps"),
          "Run up to `steps` Adam steps; stops at an epoch's end or at a divergence (varinf/vae_trainer.hpp), "
          "after which theta holds the last good parameters and no further step is taken.")
      .def_property_readonly("first_loss", &Trainer::first_loss)
      .def_property_readonly("loss_limit", &Trainer::loss_limit)
      .def_property_readonly("step", &Trainer::step)
      .def_property_readonly("epoch", &Trainer::epoch)
      .def_property_readonly("threads", &Trainer::threads);
}

// Adam (varinf/optim.hpp) on a caller-owned flat parameter array, updated in place.
template <typename T>
void bind_adam(py::module_ m, const std::string& suffix) {
  using A = Adam<T>;
  py::class_<A>(m, ("Adam" + suffix).c_str())
      .def(py::init([](Index n, double learning_rate, double beta1, double beta2, double eps) {
             return std::make_unique<A>(n, AdamOptions{learning_rate, beta1, beta2, eps});
           }),
           py::arg("num_params"), py::arg("learning_rate") = 1e-3, py::arg("beta1") = 0.9,
           py::arg("beta2") = 0.999, py::arg("eps") = 1e-8)
      .def(
          "step",
          [](A& a, Array<T>& theta, const Array<T>& grad) {
            require(theta.ndim() == 1 && theta.shape(0) == a.size() && grad.ndim() == 1 && grad.shape(0) == a.size(),
                    "theta and grad must be 1-D arrays of num_params entries");
            NoGil nogil;
            a.step(theta.mutable_data(), grad.data());
          },
          py::arg("theta").noconvert(), py::arg("grad").noconvert(),
          "One Adam step (PyTorch's rule) on theta in place.")
      .def_property_readonly("t", &A::t);
}

}  // namespace

void bind_vae(py::module_ m, py::module_ testing) {
  bind_adam<float>(testing, "F32");
  bind_adam<double>(testing, "F64");
  bind_dtype<float>(m, "F32");
  bind_dtype<double>(m, "F64");
}

}  // namespace varinf::bindings
